//! The server window's widget tree (from `ui/server_window.ui`) and its state.

use std::cell::{Cell, RefCell};

use gtk::gio;
use gtk::glib;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use crate::transport::server::{Server, ServerHandle, ServerOptions};

/// Called once the server listens: (window, bound address, fingerprint).
pub type StartedCallback = Box<dyn Fn(&super::LwServerWindow, std::net::SocketAddr, &str)>;

#[derive(Default, gtk::CompositeTemplate)]
#[template(file = "../../../ui/server_window.ui")]
pub struct LwServerWindow {
    #[template_child]
    pub(super) subtitle_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub(super) address_entry: TemplateChild<gtk::Entry>,
    #[template_child]
    pub(super) port_entry: TemplateChild<gtk::Entry>,
    #[template_child]
    pub(super) start_button: TemplateChild<gtk::Button>,
    #[template_child]
    pub(super) stop_button: TemplateChild<gtk::Button>,
    #[template_child]
    pub(super) status_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub(super) fingerprint_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub(super) copy_button: TemplateChild<gtk::Button>,
    #[template_child]
    pub(super) clients_heading: TemplateChild<gtk::Label>,
    #[template_child]
    pub(super) clients_view: TemplateChild<gtk::ColumnView>,
    #[template_child]
    pub(super) log_scroller: TemplateChild<gtk::ScrolledWindow>,
    #[template_child]
    pub(super) log_view: TemplateChild<gtk::TextView>,
    #[template_child]
    pub(super) announce_entry: TemplateChild<gtk::Entry>,
    #[template_child]
    pub(super) announce_room: TemplateChild<gtk::DropDown>,
    #[template_child]
    pub(super) rooms_heading: TemplateChild<gtk::Label>,
    #[template_child]
    pub(super) rooms_view: TemplateChild<gtk::ColumnView>,
    #[template_child]
    pub(super) announce_button: TemplateChild<gtk::Button>,
    #[template_child]
    pub(super) delete_entry: TemplateChild<gtk::Entry>,
    #[template_child]
    pub(super) delete_button: TemplateChild<gtk::Button>,

    /// Options other than the listen address (data dir, certificate, limits).
    pub(super) options: RefCell<Option<ServerOptions>>,
    pub(super) server: RefCell<Option<Server>>,
    pub(super) handle: RefCell<Option<ServerHandle>>,
    /// Connected clients (a `gio::ListStore` of `LwClientEntry`).
    pub(super) clients: RefCell<Option<gio::ListStore>>,
    /// Rooms (a `gio::ListStore` of `LwServerRoom`), `#general` first.
    pub(super) rooms: RefCell<Option<gio::ListStore>>,
    /// The announce dropdown's room names, in the order of `rooms`.
    pub(super) room_names: RefCell<Option<gtk::StringList>>,
    /// Bumped on every start and stop; events of an older run are dropped.
    pub(super) generation: Cell<u64>,
    /// Starting or stopping right now.
    pub(super) busy: Cell<bool>,
    /// Log lines (also in the text view).
    pub(super) log: RefCell<Vec<String>>,
    pub(super) on_started: RefCell<Vec<StartedCallback>>,
}

#[glib::object_subclass]
impl ObjectSubclass for LwServerWindow {
    const NAME: &'static str = "LwServerWindow";
    type Type = super::LwServerWindow;
    type ParentType = adw::ApplicationWindow;

    fn class_init(klass: &mut Self::Class) {
        crate::gui::init_adw();
        klass.bind_template();
        klass.bind_template_callbacks();
    }

    fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
        obj.init_template();
    }
}

/// The handlers `ui/server_window.ui` declares.
#[gtk::template_callbacks]
impl LwServerWindow {
    #[template_callback]
    fn on_start(&self) {
        self.obj().start();
    }

    #[template_callback]
    fn on_stop(&self) {
        self.obj().stop();
    }

    #[template_callback]
    fn on_copy_fingerprint(&self) {
        let fp = self.fingerprint_label.text();
        self.obj().clipboard().set_text(&fp);
    }

    /// The Announce button, or Enter in the announcement field.
    #[template_callback]
    fn on_announce(&self) {
        let text = self.announce_entry.text().trim().to_owned();
        if !text.is_empty() {
            let obj = self.obj();
            match obj.announce_target() {
                Some(room) => obj.announce_to(&room, &text),
                None => obj.announce(&text),
            }
            self.announce_entry.set_text("");
        }
    }

    /// Deletes the message whose id the operator typed (the `[id]` of the log).
    #[template_callback]
    fn on_delete_message(&self) {
        let text = self.delete_entry.text();
        match text
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<u64>()
        {
            Ok(id) => {
                self.obj().delete_message(id);
                self.delete_entry.set_text("");
            }
            Err(_) => self.obj().log_line(&format!(
                "“{}” is not a message id: type the number shown in [brackets] in the log",
                text.trim()
            )),
        }
    }
}

impl ObjectImpl for LwServerWindow {
    fn constructed(&self) {
        self.parent_constructed();
        self.obj().setup();
    }
}

impl WidgetImpl for LwServerWindow {}

impl WindowImpl for LwServerWindow {
    fn close_request(&self) -> glib::Propagation {
        self.obj().stop_blocking();
        self.parent_close_request()
    }
}

impl ApplicationWindowImpl for LwServerWindow {}

impl adw::subclass::prelude::AdwApplicationWindowImpl for LwServerWindow {}
