//! The client window's widget tree (from `ui/client_window.ui`) and its state.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;

use gtk::gio;
use gtk::glib;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use crate::gui::models::LwConversation;
use crate::transport::client::ClientHandle;

/// The login form as typed (the password stays in memory only).
#[derive(Debug, Clone, Default)]
pub struct LoginForm {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl LoginForm {
    pub fn server(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A running client session.
pub struct Session {
    pub handle: ClientHandle,
    pub form: LoginForm,
    /// Name as registered (set by `Ready`).
    pub user: Option<String>,
    pub delete_window_secs: u64,
    /// Connected right now.
    pub online: bool,
    /// The first catch-up after login is running (no unread counts or notifications).
    pub catching_up: bool,
}

#[derive(Default, gtk::CompositeTemplate)]
#[template(file = "../../../ui/client_window.ui")]
pub struct LwClientWindow {
    #[template_child]
    pub title_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub subtitle_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub new_chat_button: TemplateChild<gtk::MenuButton>,
    #[template_child]
    pub new_chat_popover: TemplateChild<gtk::Popover>,
    #[template_child]
    pub new_chat_entry: TemplateChild<gtk::Entry>,
    #[template_child]
    pub new_chat_go: TemplateChild<gtk::Button>,
    #[template_child]
    pub online_heading: TemplateChild<gtk::Label>,
    #[template_child]
    pub online_list: TemplateChild<gtk::ListBox>,
    #[template_child]
    pub logout_button: TemplateChild<gtk::Button>,
    #[template_child]
    pub stack: TemplateChild<gtk::Stack>,
    #[template_child]
    pub host_entry: TemplateChild<gtk::Entry>,
    #[template_child]
    pub port_entry: TemplateChild<gtk::Entry>,
    #[template_child]
    pub user_entry: TemplateChild<gtk::Entry>,
    #[template_child]
    pub password_entry: TemplateChild<gtk::PasswordEntry>,
    #[template_child]
    pub connect_button: TemplateChild<gtk::Button>,
    #[template_child]
    pub connect_spinner: TemplateChild<gtk::Spinner>,
    #[template_child]
    pub connect_status: TemplateChild<gtk::Label>,
    #[template_child]
    pub trust_box: TemplateChild<gtk::Box>,
    #[template_child]
    pub trust_title: TemplateChild<gtk::Label>,
    #[template_child]
    pub trust_fingerprint: TemplateChild<gtk::Label>,
    #[template_child]
    pub trust_cancel: TemplateChild<gtk::Button>,
    #[template_child]
    pub trust_accept: TemplateChild<gtk::Button>,
    #[template_child]
    pub connect_error: TemplateChild<gtk::Label>,
    #[template_child]
    pub sidebar: TemplateChild<gtk::ListBox>,
    #[template_child]
    pub me_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub banner: TemplateChild<gtk::Revealer>,
    #[template_child]
    pub banner_spinner: TemplateChild<gtk::Spinner>,
    #[template_child]
    pub banner_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub empty_state: TemplateChild<gtk::Box>,
    #[template_child]
    pub message_scroller: TemplateChild<gtk::ScrolledWindow>,
    #[template_child]
    pub message_list: TemplateChild<gtk::ListView>,
    #[template_child]
    pub toast: TemplateChild<gtk::Revealer>,
    #[template_child]
    pub toast_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub toast_close: TemplateChild<gtk::Button>,
    #[template_child]
    pub offline_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub composer: TemplateChild<gtk::TextView>,
    #[template_child]
    pub send_button: TemplateChild<gtk::Button>,
    #[template_child]
    pub attach_button: TemplateChild<gtk::Button>,
    #[template_child]
    pub transfer_bar: TemplateChild<gtk::ProgressBar>,

    /// Where pins and the remembered login live.
    pub config_dir: RefCell<PathBuf>,
    /// Where the sync position, pinned peer keys and the identity key live.
    pub state_dir: RefCell<PathBuf>,
    /// Conversations in the sidebar.
    pub conversations: RefCell<Option<gio::ListStore>>,
    /// The model the message list shows (the current conversation's messages).
    pub selection: RefCell<Option<gtk::NoSelection>>,
    pub current: RefCell<Option<LwConversation>>,
    pub session: RefCell<Option<Session>>,
    /// Bumped on every connect and logout; events of older sessions are dropped.
    pub generation: Cell<u64>,
    /// Online users: lowercase key -> display name.
    pub online: RefCell<BTreeMap<String, String>>,
    /// A login waiting for the user to trust the server: (form, fingerprint).
    pub pending_trust: RefCell<Option<(LoginForm, String)>>,
    /// Keep the message list scrolled to the newest message.
    pub stick_to_bottom: Cell<bool>,
    /// `sync` barriers answered (tests wait on this).
    pub syncs: Cell<u64>,
    /// The last error shown, in words.
    pub last_error: RefCell<Option<String>>,
    pub toast_timeout: RefCell<Option<glib::SourceId>>,
    /// A private chat just started by name and not confirmed by the server yet.
    pub new_chat: RefCell<Option<String>>,
}

#[glib::object_subclass]
impl ObjectSubclass for LwClientWindow {
    const NAME: &'static str = "LwClientWindow";
    type Type = super::LwClientWindow;
    type ParentType = gtk::ApplicationWindow;

    fn class_init(klass: &mut Self::Class) {
        klass.bind_template();
    }

    fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
        obj.init_template();
    }
}

impl ObjectImpl for LwClientWindow {
    fn constructed(&self) {
        self.parent_constructed();
        self.stick_to_bottom.set(true);
        self.obj().setup();
    }
}

impl WidgetImpl for LwClientWindow {}

impl WindowImpl for LwClientWindow {
    fn close_request(&self) -> glib::Propagation {
        self.obj().end_session();
        self.parent_close_request()
    }
}

impl ApplicationWindowImpl for LwClientWindow {}
