//! `LwComposer`: the text field with its send and attach buttons, the offline notice and
//! the progress bar of a file transfer.
//!
//! Enter (or the send button) emits `send` with the text, the paperclip emits `attach`;
//! the window sends them. While offline, or in a room the user was removed from,
//! everything is off and says why.

mod mentions;

use std::sync::OnceLock;

use gtk::glib::subclass::Signal;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gdk, glib};
use gtk4 as gtk;

use crate::gui::i18n::{gettext, gettext_with};

mod imp {
    use super::*;

    #[derive(Default, gtk::CompositeTemplate)]
    #[template(file = "../../../ui/client_window/composer.ui")]
    pub struct LwComposer {
        #[template_child]
        pub(super) offline_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) transfer_bar: TemplateChild<gtk::ProgressBar>,
        #[template_child]
        pub(super) attach_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub(super) text_view: TemplateChild<gtk::TextView>,
        #[template_child]
        pub(super) send_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub(super) mode_bar: TemplateChild<gtk::Box>,
        #[template_child]
        pub(super) mode_label: TemplateChild<gtk::Label>,
        /// Replying to or editing a message, or neither.
        pub(super) mode: std::cell::RefCell<super::ComposeMode>,
        /// Why the conversation shown is read-only, if it is.
        pub(super) read_only: std::cell::RefCell<Option<String>>,
        /// Why the client is offline, if it is.
        pub(super) offline: std::cell::RefCell<Option<String>>,
        /// The `@` completion list (`composer/mentions.rs`).
        pub(super) mention_popover: std::cell::RefCell<Option<super::mentions::MentionPopover>>,
        /// Where the names `@` completes come from (the window).
        #[allow(clippy::type_complexity)]
        pub(super) mention_source: std::cell::RefCell<Option<Box<dyn Fn() -> Vec<String>>>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for LwComposer {
        const NAME: &'static str = "LwComposer";
        type Type = super::LwComposer;
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
    impl LwComposer {
        /// Enter sends; Shift+Enter is a new line. Returns whether the key was used.
        #[template_callback]
        fn on_key_pressed(&self, key: gdk::Key, _keycode: u32, state: gdk::ModifierType) -> bool {
            // An open `@` list takes Tab, Enter, Up, Down and Escape first.
            if self.obj().mention_key(key) {
                return true;
            }
            if key == gdk::Key::Escape && *self.mode.borrow() != super::ComposeMode::Message {
                self.obj().cancel_mode();
                return true;
            }
            let enter = matches!(key, gdk::Key::Return | gdk::Key::KP_Enter);
            if enter && !state.contains(gdk::ModifierType::SHIFT_MASK) {
                self.obj().send();
                return true;
            }
            false
        }

        #[template_callback]
        fn on_send_clicked(&self) {
            self.obj().send();
        }

        #[template_callback]
        fn on_mode_cancel(&self) {
            self.obj().cancel_mode();
        }

        #[template_callback]
        fn on_attach_clicked(&self) {
            self.obj().emit_by_name::<()>("attach", &[]);
        }
    }

    impl ObjectImpl for LwComposer {
        fn signals() -> &'static [Signal] {
            static SIGNALS: OnceLock<Vec<Signal>> = OnceLock::new();
            SIGNALS.get_or_init(|| {
                vec![
                    // The user sends this text; the handler says whether it was sent
                    // (then the field is emptied).
                    Signal::builder("send")
                        .param_types([String::static_type()])
                        .return_type::<bool>()
                        .build(),
                    // The user wants to pick a file to send.
                    Signal::builder("attach").build(),
                ]
            })
        }

        fn dispose(&self) {
            if let Some(p) = self.mention_popover.take() {
                p.unparent();
            }
        }
    }

    impl WidgetImpl for LwComposer {}
    impl BoxImpl for LwComposer {}
}

glib::wrapper! {
    /// The composer of the client window.
    pub struct LwComposer(ObjectSubclass<imp::LwComposer>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

impl LwComposer {
    /// Emits `send` with the text (trailing blanks trimmed; nothing for blank text), and
    /// empties the field if it was sent.
    pub fn send(&self) {
        let buffer = self.imp().text_view.buffer();
        let text = buffer
            .text(&buffer.start_iter(), &buffer.end_iter(), false)
            .to_string();
        let text = text.trim_end_matches(['\n', '\r', ' ', '\t']).to_owned();
        if text.trim().is_empty() {
            return;
        }
        if self.emit_by_name::<bool>("send", &[&text]) {
            buffer.set_text("");
            self.set_mode(ComposeMode::Message, "");
        }
    }

    /// The text field's buffer (the window follows it for typing notices).
    pub fn text_buffer(&self) -> gtk::TextBuffer {
        self.imp().text_view.buffer()
    }

    /// Types `text` into the field and sends it, as Enter would.
    pub fn type_and_send(&self, text: &str) {
        self.imp().text_view.buffer().set_text(text);
        self.send();
    }

    /// Turns the composer on (online) or off, with the reason shown while off.
    pub fn set_online(&self, online: bool, reason: &str) {
        self.imp().offline.replace((!online).then(|| {
            gettext_with(
                "You can't send while offline: {reason}",
                &[("reason", &reason)],
            )
        }));
        self.refresh();
    }

    /// Makes the composer read-only for the conversation shown (`Some(why)`), or not.
    pub fn set_read_only(&self, why: Option<&str>) {
        self.imp().read_only.replace(why.map(str::to_owned));
        self.refresh();
    }

    /// Off while offline or read-only; the label says why (being removed first: it does
    /// not go away with a reconnect).
    fn refresh(&self) {
        let imp = self.imp();
        let why = imp
            .read_only
            .borrow()
            .clone()
            .or_else(|| imp.offline.borrow().clone());
        let on = why.is_none();
        if let Some(why) = &why {
            imp.offline_label.set_text(why);
        }
        imp.offline_label.set_visible(!on);
        imp.text_view.set_sensitive(on);
        imp.send_button.set_sensitive(on);
        imp.attach_button.set_sensitive(on);
    }

    /// The composer accepts input.
    pub fn is_enabled(&self) -> bool {
        self.imp().text_view.is_sensitive()
    }

    /// Puts the cursor in the text field.
    pub fn focus(&self) {
        self.imp().text_view.grab_focus();
    }

    /// Shows the progress of a transfer (`up` or `down`); hidden once complete.
    pub fn show_transfer(&self, direction: &str, bytes: u64, total: u64) {
        let bar = &self.imp().transfer_bar;
        let fraction = if total == 0 {
            1.0
        } else {
            bytes as f64 / total as f64
        };
        let percent = format!("{:.0}", fraction * 100.0);
        let text = if direction == "up" {
            gettext_with("Sending… {percent} %", &[("percent", &percent)])
        } else {
            gettext_with("Downloading… {percent} %", &[("percent", &percent)])
        };
        bar.set_fraction(fraction.clamp(0.0, 1.0));
        bar.set_text(Some(&text));
        bar.set_visible(bytes < total);
    }

    /// Hides the transfer progress.
    pub fn hide_transfer(&self) {
        self.imp().transfer_bar.set_visible(false);
    }

    /// The transfer progress bar: (visible, fraction).
    pub fn transfer_progress(&self) -> (bool, f64) {
        let bar = &self.imp().transfer_bar;
        (bar.is_visible(), bar.fraction())
    }
}

/// What Enter does with the text: post it, post it as a reply, or save it as an edit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ComposeMode {
    /// A new message.
    #[default]
    Message,
    /// A reply to this message.
    Reply {
        /// The message replied to.
        id: u64,
    },
    /// The new text of this message of yours.
    Edit {
        /// The message edited.
        id: u64,
    },
}

impl LwComposer {
    /// What Enter does now.
    pub fn mode(&self) -> ComposeMode {
        self.imp().mode.borrow().clone()
    }

    fn set_mode(&self, mode: ComposeMode, label: &str) {
        let imp = self.imp();
        imp.mode_bar.set_visible(mode != ComposeMode::Message);
        imp.mode_label.set_text(label);
        imp.mode.replace(mode);
    }

    /// Replies to message `id`; the bar above the field shows `quote`.
    pub fn start_reply(&self, id: u64, quote: &str) {
        if self.mode_is_edit() {
            self.imp().text_view.buffer().set_text("");
        }
        self.set_mode(
            ComposeMode::Reply { id },
            &gettext_with("Replying to {quote}", &[("quote", &quote)]),
        );
        self.focus();
    }

    /// Edits message `id`: its text goes into the field; Enter saves, Escape cancels.
    pub fn start_edit(&self, id: u64, text: &str) {
        self.imp().text_view.buffer().set_text(text);
        self.set_mode(ComposeMode::Edit { id }, &gettext("Editing your message"));
        self.focus();
    }

    /// Back to a new message (an edit's text leaves the field).
    pub fn cancel_mode(&self) {
        if self.mode_is_edit() {
            self.imp().text_view.buffer().set_text("");
        }
        self.set_mode(ComposeMode::Message, "");
    }

    fn mode_is_edit(&self) -> bool {
        matches!(*self.imp().mode.borrow(), ComposeMode::Edit { .. })
    }

    /// The text in the field (for tests).
    pub fn text(&self) -> String {
        let buffer = self.imp().text_view.buffer();
        buffer
            .text(&buffer.start_iter(), &buffer.end_iter(), false)
            .to_string()
    }
}
