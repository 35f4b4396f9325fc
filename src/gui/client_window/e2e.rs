//! End-to-end encryption news in the window (issue 16): a device added to or removed from a
//! user you talk to privately is a notice in that conversation and a toast — never
//! silent — and a broken verification says so in both places, plus a red bar in that
//! conversation that stays until the user verifies again or dismisses it, and a warning
//! mark on its sidebar row.
//!
//! Verification: in a private conversation, "Verify bob…" (the button on the privacy line
//! under the header, and the conversation menu; action `win.verify-peer`) opens a dialog
//! with bob's devices and the safety code, large and selectable, and "Mark as Verified",
//! which sends `verify` with the code shown. The core has no "unverify" command and no
//! "is verified" query, so the window knows a peer is verified from the `verified` event of
//! this session only (docs/GUI.md).

use std::cell::RefCell;
use std::rc::Rc;

use adw::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use super::LwClientWindow;
use crate::app::client::{Command, Event};
use crate::gui::i18n::{gettext, gettext_with};
use crate::gui::models::{LwConversation, VERIFICATION_BROKEN, VERIFIED, VERIFY_UNKNOWN};

/// The parts of the Verify dialog that the `devices` and `safety_code` answers fill.
///
/// The window makes one dialog and hides it on close (as the New Room dialog). It is a
/// plain modal `GtkWindow`, not an `AdwMessageDialog`: libadwaita 1.2's message dialog
/// crashes in its show/hide animation (`adw_animation_skip` → `g_object_unref` on a
/// finalized object) when it is shown a second time or answered while animating, seen under
/// Xvfb with a backtrace.
pub(super) struct VerifyView {
    heading: gtk::Label,
    body: gtk::Label,
    verify: gtk::Button,
    /// Whom it verifies (lowercase, no `@`).
    user: Rc<RefCell<String>>,
    devices_heading: gtk::Label,
    devices: gtk::Label,
    code: gtk::Label,
    copy: gtk::Button,
    /// The code as the core gave it (sent back with `verify`), once it came.
    raw_code: Rc<RefCell<Option<String>>>,
}

/// The code in rows of four groups, to read out one row at a time.
fn code_rows(code: &str) -> String {
    code.split_whitespace()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|row| row.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl LwClientWindow {
    /// An MLS event (`devices`, `device_added`, `device_removed`, `safety_code`,
    /// `verified`, `verification_broken`).
    pub(super) fn handle_e2e_event(&self, e: Event) {
        // The answers to the Verify dialog's own questions go to the dialog only.
        if self.fill_verify_dialog(&e) {
            return;
        }
        match &e {
            Event::Verified { user } => self.set_verification(user, VERIFIED),
            Event::VerificationBroken { user } => self.set_verification(user, VERIFICATION_BROKEN),
            _ => {}
        }
        let (user, text, toast) = match e {
            Event::DeviceAdded { user, device } => (
                user.clone(),
                gettext_with(
                    "{user} added a device ({device}). It can read your messages with {user} from now on.",
                    &[("user", &user), ("device", &device)],
                ),
                gettext_with("{user} added a device", &[("user", &user)]),
            ),
            Event::DeviceRemoved { user, device } => (
                user.clone(),
                gettext_with(
                    "{user} removed a device ({device}).",
                    &[("user", &user), ("device", &device)],
                ),
                gettext_with("{user} removed a device", &[("user", &user)]),
            ),
            Event::VerificationBroken { user } => (
                user.clone(),
                gettext_with(
                    "⚠ {user}'s devices changed since you verified them. Compare your safety code with {user} again before you trust this conversation.",
                    &[("user", &user)],
                ),
                gettext_with(
                    "⚠ Verification of {user} broken: their devices changed",
                    &[("user", &user)],
                ),
            ),
            Event::Verified { user } => (
                user.clone(),
                gettext_with("✔ You verified {user}.", &[("user", &user)]),
                gettext_with("{user} verified", &[("user", &user)]),
            ),
            Event::SafetyCode { user, code } => (
                user.clone(),
                gettext_with(
                    "Safety code with {user}: {code}. Compare it with {user} in person or on a call.",
                    &[("user", &user), ("code", &code)],
                ),
                gettext_with(
                    "Safety code with {user}: {code}",
                    &[("user", &user), ("code", &code)],
                ),
            ),
            // The window asks for device lists only for the Verify dialog (and the core
            // asks for both users' lists to compute a code): an answer that finds the
            // dialog closed is not news.
            Event::Devices { .. } => return,
            _ => return,
        };
        // News about the user's own devices has no conversation of its own: a toast.
        if self.me().is_some_and(|me| me.eq_ignore_ascii_case(&user)) {
            if !toast.is_empty() {
                self.show_toast(&toast);
            }
            return;
        }
        let c = self.conversation_for(&format!("@{user}"));
        c.add_notice(&text, now_ms());
        if !toast.is_empty() {
            self.show_toast(&toast);
        }
    }
}

impl LwClientWindow {
    /// The `win.verify-peer` action: the Verify dialog for the peer of the private
    /// conversation shown.
    pub(super) fn verify_action() -> gio::ActionEntry<Self> {
        gio::ActionEntry::builder("verify-peer")
            .activate(|win: &Self, _, _| {
                if let Some(peer) = win.current().and_then(|c| c.peer()) {
                    win.open_verify_dialog(&peer);
                }
            })
            .build()
    }

    /// Opens the Verify dialog for `user`: asks the core for their devices and the safety
    /// code, which fill the dialog when they come.
    pub fn open_verify_dialog(&self, user: &str) {
        let user = user.trim_start_matches('@').to_ascii_lowercase();
        if self.imp().verify_dialog.borrow().is_none() {
            let made = self.make_verify_dialog();
            self.imp().verify_dialog.replace(Some(made));
        }
        let open = self.imp().verify_dialog.borrow();
        let (dialog, view) = open.as_ref().expect("made above");
        view.user.replace(user.clone());
        view.raw_code.replace(None);
        view.code.set_text(&gettext("Computing the safety code…"));
        view.devices.set_text(&gettext("Asking the server…"));
        view.devices_heading
            .set_text(&gettext_with("{user}'s devices", &[("user", &user)]));
        view.copy.set_sensitive(false);
        view.heading
            .set_text(&gettext_with("Verify {user}", &[("user", &user)]));
        dialog.set_title(Some(&gettext_with("Verify {user}", &[("user", &user)])));
        view.body.set_text(&gettext_with(
            "Compare this code with {user} in person or by a call. If it matches, mark {user} as verified. The code changes when you or {user} add or remove a device, and you will be warned.",
            &[("user", &user)],
        ));
        view.verify.set_sensitive(false);
        let dialog = dialog.clone();
        drop(open);
        self.send_command(Command::Devices { user: user.clone() });
        self.send_command(Command::SafetyCode { user });
        dialog.present();
    }

    /// The Verify dialog, made once per window (see [`VerifyView`]).
    fn make_verify_dialog(&self) -> (gtk::Window, VerifyView) {
        let devices = gtk::Label::builder()
            .xalign(0.0)
            .wrap(true)
            .selectable(true)
            .build();
        let code = gtk::Label::builder()
            .justify(gtk::Justification::Center)
            .selectable(true)
            .css_classes(["safety-code"])
            .build();
        let raw_code: Rc<RefCell<Option<String>>> = Rc::default();
        let user: Rc<RefCell<String>> = Rc::default();
        let copy = gtk::Button::builder()
            .label(gettext("_Copy Code"))
            .use_underline(true)
            .halign(gtk::Align::Center)
            .build();
        copy.connect_clicked({
            let raw = raw_code.clone();
            move |b| {
                if let Some(code) = raw.borrow().as_deref() {
                    b.clipboard().set_text(code);
                }
            }
        });
        let devices_heading = gtk::Label::builder()
            .xalign(0.0)
            .css_classes(["heading"])
            .build();
        let extra = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(8)
            .build();
        extra.append(&code);
        extra.append(&copy);
        extra.append(&devices_heading);
        extra.append(&devices);
        let heading = gtk::Label::builder()
            .wrap(true)
            .justify(gtk::Justification::Center)
            .css_classes(["title-2"])
            .build();
        let body = gtk::Label::builder()
            .wrap(true)
            .justify(gtk::Justification::Center)
            .max_width_chars(48)
            .build();
        let close = gtk::Button::with_mnemonic(&gettext("_Close"));
        let verify = gtk::Button::with_mnemonic(&gettext("_Mark as Verified"));
        verify.add_css_class("suggested-action");
        let buttons = gtk::Box::builder()
            .spacing(12)
            .halign(gtk::Align::Center)
            .homogeneous(true)
            .build();
        buttons.append(&close);
        buttons.append(&verify);
        let content = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(12)
            .margin_top(24)
            .margin_bottom(24)
            .margin_start(24)
            .margin_end(24)
            .build();
        content.append(&heading);
        content.append(&body);
        content.append(&extra);
        content.append(&buttons);
        let dialog = gtk::Window::builder()
            .transient_for(self)
            .modal(true)
            .hide_on_close(true)
            .resizable(false)
            .default_width(420)
            .child(&content)
            .build();
        // Escape closes it, as any dialog.
        let keys = gtk::ShortcutController::new();
        keys.add_shortcut(gtk::Shortcut::new(
            gtk::ShortcutTrigger::parse_string("Escape"),
            Some(gtk::CallbackAction::new(|w, _| {
                if let Some(w) = w.downcast_ref::<gtk::Window>() {
                    w.close();
                }
                glib::Propagation::Stop
            })),
        ));
        dialog.add_controller(keys);
        close.connect_clicked(glib::clone!(
            #[weak]
            dialog,
            move |_| dialog.close()
        ));
        verify.connect_clicked(glib::clone!(
            #[weak(rename_to = win)]
            self,
            #[weak]
            dialog,
            #[strong]
            raw_code,
            #[strong]
            user,
            move |_| {
                dialog.close();
                if let Some(code) = raw_code.borrow().clone() {
                    win.send_command(Command::Verify {
                        user: user.borrow().clone(),
                        code,
                    });
                }
            }
        ));
        let view = VerifyView {
            heading,
            body,
            verify,
            user,
            devices_heading,
            devices,
            code,
            copy,
            raw_code,
        };
        (dialog, view)
    }

    /// Fills the open Verify dialog with a `devices` or `safety_code` answer about its
    /// user; true if the event was for it.
    fn fill_verify_dialog(&self, e: &Event) -> bool {
        let imp = self.imp();
        let open = imp.verify_dialog.borrow();
        let Some((_, view)) = open.as_ref().filter(|(d, _)| d.is_visible()) else {
            return false;
        };
        let ours = |user: &str| user.eq_ignore_ascii_case(&view.user.borrow());
        match e {
            Event::SafetyCode { user, code } if ours(user) => {
                view.code.set_text(&code_rows(code));
                view.raw_code.replace(Some(code.clone()));
                view.copy.set_sensitive(true);
                view.verify.set_sensitive(true);
                true
            }
            Event::Devices { user, devices } if ours(user) => {
                view.devices.set_text(&if devices.is_empty() {
                    gettext_with(
                        "{user} has no end-to-end device yet: there is nothing to verify.",
                        &[("user", user)],
                    )
                } else {
                    devices.join("\n")
                });
                true
            }
            _ => false,
        }
    }

    /// `user`'s verification changed: their conversation's mark, the privacy line and the
    /// warning bar follow.
    fn set_verification(&self, user: &str, state: u32) {
        let conv = self.conversation_for(&format!("@{}", user.to_ascii_lowercase()));
        conv.set_verification(state);
        if state == VERIFICATION_BROKEN {
            self.imp().announcer.set_text(&gettext_with(
                "Warning: {user}'s devices changed since you verified them.",
                &[("user", &user)],
            ));
        }
        if self.current().as_ref() == Some(&conv) {
            self.show_privacy(Some(&conv));
        }
    }

    /// The warning bar's close button: the user saw it and does not re-verify now.
    pub fn dismiss_verification_warning(&self) {
        if let Some(conv) = self.current()
            && conv.verification() == VERIFICATION_BROKEN
        {
            conv.set_verification(VERIFY_UNKNOWN);
            self.show_privacy(Some(&conv));
        }
    }

    /// The safety code the open Verify dialog shows, as the core gave it (for tests);
    /// `Some("")` while it is being computed, `None` when no dialog is open.
    pub fn verify_dialog_code(&self) -> Option<String> {
        self.imp()
            .verify_dialog
            .borrow()
            .as_ref()
            .filter(|(d, _)| d.is_visible())
            .map(|(_, v)| v.raw_code.borrow().clone().unwrap_or_default())
    }

    /// The devices the open Verify dialog lists (for tests).
    pub fn verify_dialog_devices(&self) -> Option<String> {
        self.imp()
            .verify_dialog
            .borrow()
            .as_ref()
            .filter(|(d, _)| d.is_visible())
            .map(|(_, v)| v.devices.text().to_string())
    }

    /// Answers the open Verify dialog as its buttons do: Mark as Verified (`true`) or Close
    /// (for tests and keyboard-less scripts).
    pub fn answer_verify_dialog(&self, verify: bool) {
        let open = self.imp().verify_dialog.borrow();
        if let Some((dialog, view)) = open.as_ref().filter(|(d, _)| d.is_visible()) {
            if verify {
                let button = view.verify.clone();
                drop(open);
                button.emit_clicked();
            } else {
                let dialog = dialog.clone();
                drop(open);
                dialog.close();
            }
        }
    }

    /// The open Verify dialog (for tests and screenshots).
    pub fn verify_dialog(&self) -> Option<gtk::Window> {
        self.imp()
            .verify_dialog
            .borrow()
            .as_ref()
            .filter(|(d, _)| d.is_visible())
            .map(|(d, _)| d.clone())
    }

    /// The label of the privacy line's Verify button, when it shows (for tests).
    pub fn verify_button_label(&self) -> Option<String> {
        let b = &self.imp().verify_button;
        b.is_visible()
            .then(|| b.label().map(|l| l.to_string()).unwrap_or_default())
    }

    /// The text of the broken-verification bar, when it shows (for tests).
    pub fn verification_warning(&self) -> Option<String> {
        let imp = self.imp();
        imp.verify_bar
            .reveals_child()
            .then(|| imp.verify_bar_label.text().to_string())
    }

    /// Says under the header who can read the conversation shown: a private conversation
    /// is end-to-end encrypted (MLS, or the first scheme with a peer that has no MLS device
    /// yet); `#general` and rooms are readable by the server, which stores and moderates
    /// them (docs/SECURITY.md).
    pub(super) fn show_privacy(&self, conv: Option<&LwConversation>) {
        let imp = self.imp();
        self.sync_verify_menu(conv.and_then(|c| c.peer()).as_deref());
        let broken = conv
            .filter(|c| c.verification() == VERIFICATION_BROKEN)
            .and_then(|c| c.peer());
        if let Some(peer) = &broken {
            imp.verify_bar_label.set_text(&gettext_with(
                "{peer}'s devices changed since you verified them. Someone may be reading along: compare your safety code with {peer} again.",
                &[("peer", peer)],
            ));
        }
        imp.verify_bar.set_reveal_child(broken.is_some());
        let Some(conv) = conv else {
            imp.privacy_box.set_visible(false);
            imp.verify_button.set_visible(false);
            return;
        };
        let (icon, text) = match conv.peer() {
            Some(peer) if conv.verification() == VERIFIED => (
                "security-high-symbolic",
                gettext_with(
                    "End-to-end encrypted · verified: you compared safety codes with {peer}. Only your devices and {peer}'s can read this conversation.",
                    &[("peer", &peer)],
                ),
            ),
            Some(peer) => (
                "channel-secure-symbolic",
                gettext_with(
                    "End-to-end encrypted: only your devices and {peer}'s can read this conversation. The server stores it encrypted.",
                    &[("peer", &peer)],
                ),
            ),
            None if conv.invite_only() => (
                "channel-secure-symbolic",
                gettext(
                    "End-to-end encrypted: only the devices of this room's members can read it. The server stores it encrypted and cannot search it.",
                ),
            ),
            None => (
                "channel-insecure-symbolic",
                gettext(
                    "Not end-to-end encrypted: the server can read this room (it stores, searches and moderates it). The connection to it is encrypted.",
                ),
            ),
        };
        imp.privacy_icon.set_icon_name(Some(icon));
        imp.privacy_label.set_text(&text);
        imp.privacy_box.set_visible(true);
        match conv.peer() {
            Some(peer) => {
                let label = gettext_with("Verify {peer}…", &[("peer", &peer)]);
                imp.verify_button.set_label(&label);
                imp.verify_button.set_tooltip_text(Some(&gettext_with(
                    "Compare safety codes with {peer}",
                    &[("peer", &peer)],
                )));
                imp.verify_button.set_visible(true);
            }
            None => imp.verify_button.set_visible(false),
        }
    }

    /// The conversation menu offers "Verify bob…" in a private conversation with bob.
    fn sync_verify_menu(&self, peer: Option<&str>) {
        let Some(menu) = self
            .imp()
            .conversation_menu_button
            .menu_model()
            .and_downcast::<gio::Menu>()
        else {
            return;
        };
        // Section 0 is the template's (Mute); section 1, when there, is this one.
        while menu.n_items() > 1 {
            menu.remove(menu.n_items() - 1);
        }
        if let Some(peer) = peer {
            let section = gio::Menu::new();
            section.append(
                Some(&gettext_with("_Verify {peer}…", &[("peer", &peer)])),
                Some("win.verify-peer"),
            );
            menu.append_section(None, &section);
        }
    }

    /// The line under the header that says who can read the conversation shown (for
    /// tests); empty when none is shown.
    pub fn privacy_text(&self) -> String {
        let imp = self.imp();
        if imp.privacy_box.is_visible() {
            imp.privacy_label.text().to_string()
        } else {
            String::new()
        }
    }
}
