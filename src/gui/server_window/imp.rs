//! The server window's widget tree (from `ui/server_window.ui`) and its state.

use std::cell::{Cell, RefCell};

use gtk::gio;
use gtk::glib;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use crate::transport::server::{Server, ServerHandle, ServerOptions};

/// Called once the server listens: (window, bound address, fingerprint).
pub type StartedCallback = Box<dyn Fn(&super::LwServerWindow, std::net::SocketAddr, &str)>;

#[derive(Default, gtk::CompositeTemplate)]
#[template(file = "../../../ui/server_window.ui")]
pub struct LwServerWindow {
    #[template_child]
    pub subtitle_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub address_entry: TemplateChild<gtk::Entry>,
    #[template_child]
    pub port_entry: TemplateChild<gtk::Entry>,
    #[template_child]
    pub start_button: TemplateChild<gtk::Button>,
    #[template_child]
    pub stop_button: TemplateChild<gtk::Button>,
    #[template_child]
    pub status_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub fingerprint_label: TemplateChild<gtk::Label>,
    #[template_child]
    pub copy_button: TemplateChild<gtk::Button>,
    #[template_child]
    pub clients_heading: TemplateChild<gtk::Label>,
    #[template_child]
    pub clients_view: TemplateChild<gtk::ColumnView>,
    #[template_child]
    pub log_scroller: TemplateChild<gtk::ScrolledWindow>,
    #[template_child]
    pub log_view: TemplateChild<gtk::TextView>,
    #[template_child]
    pub announce_entry: TemplateChild<gtk::Entry>,
    #[template_child]
    pub announce_button: TemplateChild<gtk::Button>,

    /// Options other than the listen address (data dir, certificate, limits).
    pub options: RefCell<Option<ServerOptions>>,
    pub server: RefCell<Option<Server>>,
    pub handle: RefCell<Option<ServerHandle>>,
    /// Connected clients (a `gio::ListStore` of `LwClientEntry`).
    pub clients: RefCell<Option<gio::ListStore>>,
    /// Bumped on every start and stop; events of an older run are dropped.
    pub generation: Cell<u64>,
    /// Starting or stopping right now.
    pub busy: Cell<bool>,
    /// Log lines (also in the text view).
    pub log: RefCell<Vec<String>>,
    pub on_started: RefCell<Vec<StartedCallback>>,
}

#[glib::object_subclass]
impl ObjectSubclass for LwServerWindow {
    const NAME: &'static str = "LwServerWindow";
    type Type = super::LwServerWindow;
    type ParentType = gtk::ApplicationWindow;

    fn class_init(klass: &mut Self::Class) {
        klass.bind_template();
    }

    fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
        obj.init_template();
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
