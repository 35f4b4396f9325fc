//! `LwConnectPage`: the connect screen. Server, port, username and password, the
//! "trust this server?" card of a first contact, progress and errors.
//!
//! It only reads and shows the form; the window starts sessions when it emits `connect`
//! (the Connect button, or Enter in the username or password field), `trust-accepted`,
//! `trust-cancelled` or `cancel-add` (*Back to Your Accounts*, while adding an account).

use std::sync::OnceLock;

use gtk::glib;
use gtk::glib::subclass::Signal;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use crate::app::ids::UserName;
use crate::gui::i18n::{gettext, gettext_with};

/// The login form as typed (the password stays in memory only).
#[derive(Debug, Clone, Default)]
pub struct LoginForm {
    /// Server host name or address.
    pub host: String,
    /// UDP port.
    pub port: u16,
    /// Username.
    pub user: String,
    /// Password, cleared once signed in.
    pub password: String,
}

impl LoginForm {
    /// `host:port`, with brackets around an IPv6 address; for a cluster typed as
    /// `a, b:7448`, each address without a port gets the port field's.
    pub fn server(&self) -> String {
        crate::transport::failover::with_default_port(&self.host, self.port)
    }
}

mod imp {
    use super::*;

    #[derive(Default, gtk::CompositeTemplate)]
    #[template(file = "../../../ui/client_window/connect_page.ui")]
    pub struct LwConnectPage {
        #[template_child]
        pub(super) host_entry: TemplateChild<gtk::Entry>,
        #[template_child]
        pub(super) port_entry: TemplateChild<gtk::Entry>,
        #[template_child]
        pub(super) user_entry: TemplateChild<gtk::Entry>,
        #[template_child]
        pub(super) password_entry: TemplateChild<gtk::PasswordEntry>,
        #[template_child]
        pub(super) connect_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub(super) connect_spinner: TemplateChild<gtk::Spinner>,
        #[template_child]
        pub(super) connect_status: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) trust_box: TemplateChild<gtk::Box>,
        #[template_child]
        pub(super) trust_title: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) trust_fingerprint: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) trust_accept: TemplateChild<gtk::Button>,
        #[template_child]
        pub(super) connect_error: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) cancel_add_button: TemplateChild<gtk::Button>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for LwConnectPage {
        const NAME: &'static str = "LwConnectPage";
        type Type = super::LwConnectPage;
        type ParentType = gtk::Box;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
            klass.bind_template_callbacks();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    #[gtk::template_callbacks]
    impl LwConnectPage {
        #[template_callback]
        fn on_connect_clicked(&self) {
            self.obj().emit_by_name::<()>("connect", &[]);
        }

        #[template_callback]
        fn on_trust_accept(&self) {
            self.obj().emit_by_name::<()>("trust-accepted", &[]);
        }

        #[template_callback]
        fn on_trust_cancel(&self) {
            self.obj().emit_by_name::<()>("trust-cancelled", &[]);
        }

        #[template_callback]
        fn on_cancel_add_clicked(&self) {
            self.obj().emit_by_name::<()>("cancel-add", &[]);
        }
    }

    impl ObjectImpl for LwConnectPage {
        fn signals() -> &'static [Signal] {
            static SIGNALS: OnceLock<Vec<Signal>> = OnceLock::new();
            SIGNALS.get_or_init(|| {
                vec![
                    // The user asks to connect with the form as it is.
                    Signal::builder("connect").build(),
                    // The user trusts the server the card shows.
                    Signal::builder("trust-accepted").build(),
                    // The user does not trust it.
                    Signal::builder("trust-cancelled").build(),
                    // Back to the accounts signed in (the page was opened by Add Account…).
                    Signal::builder("cancel-add").build(),
                ]
            })
        }
    }

    impl WidgetImpl for LwConnectPage {}
    impl BoxImpl for LwConnectPage {}
}

glib::wrapper! {
    /// The connect screen of the client window.
    pub struct LwConnectPage(ObjectSubclass<imp::LwConnectPage>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

impl LwConnectPage {
    /// The form, checked: what is wrong with it, in words, otherwise.
    pub fn read_form(&self) -> Result<LoginForm, String> {
        let imp = self.imp();
        let host = imp.host_entry.text().trim().to_owned();
        if host.is_empty() {
            return Err(gettext("Enter the server's address."));
        }
        let port: u16 = imp
            .port_entry
            .text()
            .trim()
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| gettext("The port is a number between 1 and 65535."))?;
        let user = imp.user_entry.text().trim().to_owned();
        if let Err(e) = UserName::parse(&user) {
            return Err(gettext_with(
                "That username cannot be used: {reason}.",
                &[("reason", &e)],
            ));
        }
        let password = imp.password_entry.text().to_string();
        if password.is_empty() {
            return Err(gettext("Enter your password."));
        }
        Ok(LoginForm {
            host,
            port,
            user,
            password,
        })
    }

    /// Fills the form (the password too).
    pub fn set_form(&self, host: &str, port: u16, user: &str, password: &str) {
        let imp = self.imp();
        imp.host_entry.set_text(host);
        imp.port_entry.set_text(&port.to_string());
        imp.user_entry.set_text(user);
        imp.password_entry.set_text(password);
    }

    /// Fills server, port and username as remembered, and waits for the password.
    pub fn set_remembered(&self, host: &str, port: u16, user: &str) {
        let imp = self.imp();
        imp.host_entry.set_text(host);
        imp.port_entry.set_text(&port.to_string());
        imp.user_entry.set_text(user);
        imp.password_entry.grab_focus();
    }

    /// Puts the cursor in the first empty field (the server's on a first start, the
    /// password's with a remembered login), so typing starts the sign-in.
    pub fn focus_form(&self) {
        let imp = self.imp();
        let entries: [&gtk::Widget; 3] = [
            imp.host_entry.upcast_ref(),
            imp.port_entry.upcast_ref(),
            imp.user_entry.upcast_ref(),
        ];
        let empty = entries.into_iter().find(|e| {
            e.downcast_ref::<gtk::Entry>()
                .is_some_and(|e| e.text().is_empty())
        });
        match empty {
            Some(e) => e.grab_focus(),
            None => imp.password_entry.grab_focus(),
        };
    }

    /// Empties the password field and puts the cursor there.
    pub fn clear_password(&self, focus: bool) {
        self.imp().password_entry.set_text("");
        if focus {
            self.imp().password_entry.grab_focus();
        }
    }

    /// Shows progress (`busy`) and a status line; Connect is off while busy.
    pub fn set_connecting(&self, busy: bool, status: &str) {
        let imp = self.imp();
        imp.connect_spinner.set_spinning(busy);
        imp.connect_spinner.set_visible(busy);
        imp.connect_status.set_text(status);
        imp.connect_status.set_visible(!status.is_empty());
        imp.connect_button.set_sensitive(!busy);
    }

    /// Shows an error above the form (none when `text` is empty); `severe` makes it red.
    pub fn show_error(&self, text: &str, severe: bool) {
        let label = &self.imp().connect_error;
        label.set_text(text);
        label.set_visible(!text.is_empty());
        if severe {
            label.add_css_class("severe");
        } else {
            label.remove_css_class("severe");
        }
    }

    /// Shows the "First connection to …" card with the server's fingerprint.
    pub fn show_trust(&self, server: &str, fingerprint: &str) {
        let imp = self.imp();
        imp.trust_title.set_text(&gettext_with(
            "First connection to {server}",
            &[("server", &server)],
        ));
        imp.trust_fingerprint.set_text(fingerprint);
        imp.trust_box.set_visible(true);
        imp.trust_accept.grab_focus();
    }

    /// Hides the trust card.
    pub fn hide_trust(&self) {
        self.imp().trust_box.set_visible(false);
    }

    /// The fingerprint the trust card shows, if it is shown.
    pub fn trust_prompt(&self) -> Option<String> {
        let imp = self.imp();
        imp.trust_box
            .is_visible()
            .then(|| imp.trust_fingerprint.text().to_string())
    }

    /// Shows or hides *Back to Your Accounts* (while other accounts are signed in).
    pub fn set_can_cancel(&self, can: bool) {
        self.imp().cancel_add_button.set_visible(can);
    }

    /// Whether *Back to Your Accounts* is shown.
    pub fn can_cancel(&self) -> bool {
        self.imp().cancel_add_button.is_visible()
    }

    /// Empties the form for another account and puts the cursor in the server field.
    pub fn clear_form(&self) {
        self.set_form("", 0, "", "");
        let imp = self.imp();
        imp.port_entry.set_text("");
        imp.host_entry.grab_focus();
    }

    /// The Connect button.
    pub fn connect_button(&self) -> gtk::Button {
        self.imp().connect_button.get()
    }
}
