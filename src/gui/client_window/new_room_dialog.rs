//! `LwNewRoomDialog`: the "New Room" dialog (name, topic, public or private).
//!
//! It checks the name as the server will (`RoomName::parse_new`) before anything is sent,
//! emits `create` with the form, and stays open, busy, until the window either closes it
//! (the room was created: `Joined`) or shows the server's refusal in it
//! ([`LwNewRoomDialog::show_error`]), so the user can fix the name without retyping.

use std::sync::OnceLock;

use gtk::glib;
use gtk::glib::subclass::Signal;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use super::user_facing::room_name_problem;
use crate::app::rooms::RoomName;

mod imp {
    use super::*;

    #[derive(Default, gtk::CompositeTemplate)]
    #[template(file = "../../../ui/client_window/new_room_dialog.ui")]
    pub struct LwNewRoomDialog {
        #[template_child]
        pub(super) name_entry: TemplateChild<gtk::Entry>,
        #[template_child]
        pub(super) topic_entry: TemplateChild<gtk::Entry>,
        #[template_child]
        pub(super) private_check: TemplateChild<gtk::CheckButton>,
        #[template_child]
        pub(super) error_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) create_button: TemplateChild<gtk::Button>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for LwNewRoomDialog {
        const NAME: &'static str = "LwNewRoomDialog";
        type Type = super::LwNewRoomDialog;
        type ParentType = gtk::Window;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
            klass.bind_template_callbacks();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    #[gtk::template_callbacks]
    impl LwNewRoomDialog {
        #[template_callback]
        fn on_create(&self) {
            self.obj().submit();
        }

        #[template_callback]
        fn on_cancel(&self) {
            self.obj().set_visible(false);
        }

        #[template_callback]
        fn on_changed(&self) {
            self.error_label.set_visible(false);
        }
    }

    impl ObjectImpl for LwNewRoomDialog {
        fn constructed(&self) {
            self.parent_constructed();
            self.obj()
                .set_default_widget(Some(&self.create_button.get()));
        }

        fn signals() -> &'static [Signal] {
            static SIGNALS: OnceLock<Vec<Signal>> = OnceLock::new();
            SIGNALS.get_or_init(|| {
                // Create the room: (name with '#', topic, private).
                vec![
                    Signal::builder("create")
                        .param_types([
                            String::static_type(),
                            String::static_type(),
                            bool::static_type(),
                        ])
                        .build(),
                ]
            })
        }
    }

    impl WidgetImpl for LwNewRoomDialog {}
    impl WindowImpl for LwNewRoomDialog {}
}

glib::wrapper! {
    /// The "New Room" dialog.
    pub struct LwNewRoomDialog(ObjectSubclass<imp::LwNewRoomDialog>)
        @extends gtk::Window, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Native,
                    gtk::Root, gtk::ShortcutManager;
}

impl Default for LwNewRoomDialog {
    fn default() -> Self {
        glib::Object::new()
    }
}

impl LwNewRoomDialog {
    /// An empty dialog on top of `parent`.
    pub fn new(parent: &impl IsA<gtk::Window>) -> Self {
        let d = Self::default();
        d.set_transient_for(Some(parent));
        d
    }

    /// Empties the form and shows the dialog.
    pub fn open(&self) {
        let imp = self.imp();
        imp.name_entry.set_text("");
        imp.topic_entry.set_text("");
        imp.private_check.set_active(false);
        imp.error_label.set_visible(false);
        self.set_busy(false);
        self.present();
        imp.name_entry.grab_focus();
    }

    /// Fills the form (tests, and a name typed before the dialog opened).
    pub fn fill(&self, name: &str, topic: &str, private: bool) {
        let imp = self.imp();
        imp.name_entry.set_text(name);
        imp.topic_entry.set_text(topic);
        imp.private_check.set_active(private);
    }

    /// Checks the form and emits `create` (the Create button, Enter).
    pub fn submit(&self) {
        let imp = self.imp();
        let typed = imp.name_entry.text().trim().to_owned();
        if typed.is_empty() {
            return self.show_error(&crate::gui::i18n::gettext("Give the room a name."));
        }
        let name = if typed.starts_with('#') {
            typed
        } else {
            format!("#{typed}")
        };
        if let Err(e) = RoomName::parse_new(&name) {
            return self.show_error(&crate::gui::i18n::gettext_with(
                "“{name}” cannot be a room name: {problem}.",
                &[("name", &name), ("problem", &room_name_problem(&e))],
            ));
        }
        let topic = imp.topic_entry.text().trim().to_owned();
        let private = imp.private_check.is_active();
        imp.error_label.set_visible(false);
        self.set_busy(true);
        self.emit_by_name::<()>("create", &[&name, &topic, &private]);
    }

    /// Shows why the room was not created, and lets the user try again.
    pub fn show_error(&self, text: &str) {
        let imp = self.imp();
        imp.error_label.set_text(text);
        imp.error_label.set_visible(true);
        self.set_busy(false);
    }

    /// The error shown, if any.
    pub fn error(&self) -> Option<String> {
        let label = &self.imp().error_label;
        label.is_visible().then(|| label.text().to_string())
    }

    /// Waiting for the server: the Create button is off.
    pub fn is_busy(&self) -> bool {
        !self.imp().create_button.is_sensitive()
    }

    fn set_busy(&self, busy: bool) {
        self.imp().create_button.set_sensitive(!busy);
    }
}
