//! End-to-end encryption news in the window (issue 16): a device added to or removed from a
//! user you talk to privately is a notice in that conversation and a toast — never
//! silent — and a broken verification says so in both places. Safety codes show in a
//! toast and in the conversation, to read out to the other person.

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use super::LwClientWindow;
use crate::app::client::Event;
use crate::gui::i18n::{gettext, gettext_with, ngettext_with};
use crate::gui::models::LwConversation;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl LwClientWindow {
    /// An MLS event (`devices`, `device_added`, `device_removed`, `safety_code`,
    /// `verified`, `verification_broken`).
    pub(super) fn handle_e2e_event(&self, e: Event) {
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
            Event::Devices { user, devices } => (
                user.clone(),
                ngettext_with(
                    "{user} has {n} device: {devices}",
                    "{user} has {n} devices: {devices}",
                    devices.len() as u32,
                    &[
                        ("user", &user),
                        ("n", &devices.len()),
                        ("devices", &devices.join(", ")),
                    ],
                ),
                String::new(),
            ),
            _ => return,
        };
        let c = self.conversation_for(&format!("@{user}"));
        c.add_notice(&text, now_ms());
        if !toast.is_empty() {
            self.show_toast(&toast);
        }
    }
}

impl LwClientWindow {
    /// Says under the header who can read the conversation shown: a private conversation
    /// is end-to-end encrypted (MLS, or the first scheme with a peer that has no MLS device
    /// yet); `#general` and rooms are readable by the server, which stores and moderates
    /// them (docs/SECURITY.md).
    pub(super) fn show_privacy(&self, conv: Option<&LwConversation>) {
        let imp = self.imp();
        let Some(conv) = conv else {
            imp.privacy_box.set_visible(false);
            return;
        };
        let (icon, text) = match conv.peer() {
            Some(peer) => (
                "channel-secure-symbolic",
                gettext_with(
                    "End-to-end encrypted: only your devices and {peer}'s can read this conversation. The server stores it encrypted.",
                    &[("peer", &peer)],
                ),
            ),
            None => (
                "channel-insecure-symbolic",
                gettext(
                    "Not end-to-end encrypted: the server can read this room (it stores and moderates it). The connection to it is encrypted.",
                ),
            ),
        };
        imp.privacy_icon.set_icon_name(Some(icon));
        imp.privacy_label.set_text(&text);
        imp.privacy_box.set_visible(true);
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
