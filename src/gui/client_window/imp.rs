//! The client window's widget tree (from `ui/client_window.ui`), its state, and the
//! handlers its template declares.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;

use adw::subclass::prelude::*;
use gtk::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use super::composer::LwComposer;
use super::connect_page::{LoginForm, LwConnectPage};
use super::message_list::LwMessageList;
use super::new_room_dialog::LwNewRoomDialog;
use super::room_directory::LwRoomDirectory;
use super::room_header::LwRoomHeader;
use super::search_panel::LwSearchPanel;
use super::session::Session;
use super::sidebar::LwSidebar;
use crate::gui::models::LwConversation;

#[derive(Default, gtk::CompositeTemplate)]
#[template(file = "../../../ui/client_window.ui")]
pub struct LwClientWindow {
    #[template_child]
    pub(super) toast_overlay: TemplateChild<adw::ToastOverlay>,
    #[template_child]
    pub(super) back_button: TemplateChild<gtk::Button>,
    #[template_child]
    pub(super) conversation_menu_button: TemplateChild<gtk::MenuButton>,
    #[template_child]
    pub(super) leaflet: TemplateChild<adw::Leaflet>,
    #[template_child]
    pub(super) content: TemplateChild<gtk::Box>,
    #[template_child]
    pub(super) title_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub(super) subtitle_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub(super) new_chat_button: TemplateChild<gtk::MenuButton>,
    #[template_child]
    pub(super) new_chat_popover: TemplateChild<gtk::Popover>,
    #[template_child]
    pub(super) new_chat_entry: TemplateChild<gtk::Entry>,
    #[template_child]
    pub(super) online_heading: TemplateChild<gtk::Label>,
    #[template_child]
    pub(super) online_list: TemplateChild<gtk::ListBox>,
    #[template_child]
    pub(super) stack: TemplateChild<gtk::Stack>,
    #[template_child]
    pub(super) connect_page: TemplateChild<LwConnectPage>,
    #[template_child]
    pub(super) sidebar: TemplateChild<LwSidebar>,
    #[template_child]
    pub(super) room_header: TemplateChild<LwRoomHeader>,
    #[template_child]
    pub(super) privacy_box: TemplateChild<gtk::Box>,
    #[template_child]
    pub(super) privacy_icon: TemplateChild<gtk::Image>,
    #[template_child]
    pub(super) privacy_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub(super) verify_button: TemplateChild<gtk::Button>,
    #[template_child]
    pub(super) verify_bar: TemplateChild<gtk::Revealer>,
    #[template_child]
    pub(super) verify_bar_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub(super) banner: TemplateChild<gtk::Revealer>,
    #[template_child]
    pub(super) banner_spinner: TemplateChild<gtk::Spinner>,
    #[template_child]
    pub(super) banner_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub(super) announcer: TemplateChild<gtk::Label>,
    #[template_child]
    pub(super) message_list: TemplateChild<LwMessageList>,
    #[template_child]
    pub(super) composer: TemplateChild<LwComposer>,
    #[template_child]
    pub(super) search_button: TemplateChild<gtk::ToggleButton>,
    #[template_child]
    pub(super) search_panel: TemplateChild<LwSearchPanel>,

    /// Where pins and the remembered login live.
    pub(super) config_dir: RefCell<PathBuf>,
    /// Where the sync position, pinned peer keys and the identity key live.
    pub(super) state_dir: RefCell<PathBuf>,
    /// Conversations in the sidebar.
    pub(super) conversations: RefCell<Option<gio::ListStore>>,
    /// The conversation shown.
    pub(super) current: RefCell<Option<LwConversation>>,
    pub(super) session: RefCell<Option<Session>>,
    /// Bumped on every connect and logout; events of older sessions are dropped.
    pub(super) generation: Cell<u64>,
    /// Online users: lowercase key -> display name.
    pub(super) online: RefCell<BTreeMap<String, String>>,
    /// A login waiting for the user to trust the server: (form, fingerprint).
    pub(super) pending_trust: RefCell<Option<(LoginForm, String)>>,
    /// `sync` barriers answered (tests wait on this).
    pub(super) syncs: Cell<u64>,
    /// The last error shown, in words.
    pub(super) last_error: RefCell<Option<String>>,
    /// The toast shown, so a new one (or logging out) replaces it.
    pub(super) toast: RefCell<Option<adw::Toast>>,
    /// Style, notification settings and muted conversations (`gui-settings.json`).
    pub(super) prefs: RefCell<crate::gui::preferences::Preferences>,
    /// A private chat just started by name and not confirmed by the server yet.
    pub(super) new_chat: RefCell<Option<String>>,
    /// Pending room invitations (a `gio::ListStore` of `LwInvitation`).
    pub(super) invitations: RefCell<Option<gio::ListStore>>,
    /// A room the user asked to create, join or accept, until `Joined` (then it is shown)
    /// or an error.
    pub(super) pending_room: RefCell<Option<String>>,
    /// The New Room dialog, made when first opened.
    pub(super) new_room_dialog: RefCell<Option<LwNewRoomDialog>>,
    /// The room directory, made when first opened.
    pub(super) directory: RefCell<Option<LwRoomDirectory>>,
    /// Read state, typing and receipts (`read_state.rs`).
    pub(super) read_ui: RefCell<Option<super::read_state::ReadUi>>,
    /// The accounts signed in but not shown (`accounts.rs`), the most recently shown last.
    pub(super) parked: RefCell<Vec<super::accounts::Account>>,
    /// The ids (generations) of the signed-in accounts, in the order they signed in: the
    /// switcher's order and Ctrl+Alt+1…9.
    pub(super) account_order: RefCell<Vec<u64>>,
    /// The last generation handed out (each session, and each "nothing shown", gets a new
    /// one, so an id is never reused).
    pub(super) last_generation: Cell<u64>,
    /// Events of a background account are being applied (no second notification).
    pub(super) replaying: Cell<bool>,
    /// The file chooser open (Send a File, Save File), kept until it answers.
    pub(super) file_chooser: RefCell<Option<gtk::FileChooserNative>>,
    /// The accounts section of the switcher's menu (`accounts.rs` keeps it current).
    pub(super) account_menu: RefCell<Option<gio::Menu>>,
    /// What the account switcher shows (its accounts, and whether one is signed in).
    pub(super) shown_accounts: RefCell<Option<(Vec<super::accounts::AccountSummary>, bool)>>,
    /// The Verify dialog, made when first opened and hidden on close (`e2e.rs`).
    pub(super) verify_dialog: RefCell<Option<(gtk::Window, super::e2e::VerifyView)>>,
}

#[glib::object_subclass]
impl ObjectSubclass for LwClientWindow {
    const NAME: &'static str = "LwClientWindow";
    type Type = super::LwClientWindow;
    type ParentType = adw::ApplicationWindow;

    fn class_init(klass: &mut Self::Class) {
        // libadwaita's types and style sheet (adw::Application does this on start-up;
        // a window made with a plain GtkApplication, as in tests, needs it here).
        crate::gui::init_adw();
        // The template names these types, so they must exist before it is parsed.
        LwConnectPage::ensure_type();
        LwSidebar::ensure_type();
        LwMessageList::ensure_type();
        LwComposer::ensure_type();
        LwRoomHeader::ensure_type();
        LwSearchPanel::ensure_type();
        klass.bind_template();
        klass.bind_template_callbacks();
    }

    fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
        obj.init_template();
    }
}

/// The handlers `ui/client_window.ui` declares: each hands over to the part of the window
/// that does the job.
#[gtk::template_callbacks]
impl LwClientWindow {
    #[template_callback]
    fn on_connect(&self) {
        self.obj().connect_from_form();
    }

    #[template_callback]
    fn on_trust_accepted(&self) {
        self.obj().accept_trust();
    }

    #[template_callback]
    fn on_cancel_add(&self) {
        self.obj().cancel_add_account();
    }

    #[template_callback]
    fn on_trust_cancelled(&self) {
        self.pending_trust.replace(None);
        self.connect_page.hide_trust();
        self.connect_page.set_connecting(false, "");
    }

    #[template_callback]
    fn on_conversation_selected(&self, conv: &LwConversation) {
        let obj = self.obj();
        obj.show_conversation(conv);
        obj.show_content_page();
        obj.sync_mute_action();
    }

    #[template_callback]
    fn on_load_older(&self) {
        self.obj().load_older();
    }

    #[template_callback]
    fn on_file_dropped(&self, file: &gio::File) -> bool {
        let obj = self.obj();
        match file.path() {
            Some(path) if obj.is_online() => {
                obj.attach_file(&path);
                true
            }
            _ => false,
        }
    }

    #[template_callback]
    fn on_send(&self, text: String) -> bool {
        self.obj().send_text(text)
    }

    #[template_callback]
    fn on_attach(&self) {
        self.obj().choose_attachment();
    }

    #[template_callback]
    fn on_new_chat(&self) {
        let name = self.new_chat_entry.text().trim().to_owned();
        self.obj().start_private_chat(&name);
    }

    #[template_callback]
    fn on_back(&self) {
        self.obj().show_sidebar_page();
    }

    #[template_callback]
    fn on_fold_changed(&self) {
        // The leaflet folds while it is being allocated: showing or hiding header bar
        // buttons right then would change sizes in the middle of a layout (GTK warns that
        // the header bar is drawn without an allocation). Do it right after, before the
        // next layout (GTK lays out at HIGH_IDLE + 10).
        let weak = self.obj().downgrade();
        glib::idle_add_local_full(glib::Priority::HIGH_IDLE, move || {
            if let Some(win) = weak.upgrade() {
                win.sync_fold();
            }
            glib::ControlFlow::Break
        });
    }

    #[template_callback]
    fn on_new_room(&self) {
        self.obj().open_new_room_dialog();
    }

    #[template_callback]
    fn on_browse_rooms(&self) {
        self.obj().open_directory();
    }

    #[template_callback]
    fn on_invitation_answered(&self, room: String, accept: bool) {
        self.obj().answer_invitation(&room, accept);
    }

    #[template_callback]
    fn on_members_shown(&self) {
        self.obj().request_members();
    }

    #[template_callback]
    fn on_invite(&self, user: String) {
        self.obj().invite(&user);
    }

    #[template_callback]
    fn on_set_topic(&self, topic: String) {
        self.obj().set_room_topic(&topic);
    }

    #[template_callback]
    fn on_search(&self, query: String) {
        self.obj().run_search(&query);
    }

    #[template_callback]
    fn on_search_result(&self, conv: String, id: i64) {
        self.obj().open_search_result(&conv, id);
    }

    #[template_callback]
    fn on_verify_bar_dismissed(&self) {
        self.obj().dismiss_verification_warning();
    }

    #[template_callback]
    fn on_leave(&self) {
        let obj = self.obj();
        if let Some(c) = obj.current() {
            obj.leave_room(&c.name());
        }
    }
}

impl ObjectImpl for LwClientWindow {
    fn constructed(&self) {
        self.parent_constructed();
        self.obj().setup();
    }
}

impl WidgetImpl for LwClientWindow {}

impl WindowImpl for LwClientWindow {
    fn close_request(&self) -> glib::Propagation {
        self.obj().end_parked_sessions();
        self.obj().end_session();
        self.parent_close_request()
    }
}

impl ApplicationWindowImpl for LwClientWindow {}

impl AdwApplicationWindowImpl for LwClientWindow {}
