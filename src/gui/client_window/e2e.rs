//! End-to-end encryption news in the window (issue 16): a device added to or removed from a
//! user you talk to privately is a notice in that conversation and a toast — never
//! silent — and a broken verification says so in both places. Safety codes show in a
//! toast and in the conversation, to read out to the other person.

use super::LwClientWindow;
use crate::app::client::Event;

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
                format!(
                    "{user} added a device ({device}). It can read your messages with {user} from now on."
                ),
                format!("{user} added a device"),
            ),
            Event::DeviceRemoved { user, device } => (
                user.clone(),
                format!("{user} removed a device ({device})."),
                format!("{user} removed a device"),
            ),
            Event::VerificationBroken { user } => (
                user.clone(),
                format!(
                    "⚠ {user}'s devices changed since you verified them. Compare your safety code with {user} again before you trust this conversation."
                ),
                format!("⚠ Verification of {user} broken: their devices changed"),
            ),
            Event::Verified { user } => (
                user.clone(),
                format!("✔ You verified {user}."),
                format!("{user} verified"),
            ),
            Event::SafetyCode { user, code } => (
                user.clone(),
                format!(
                    "Safety code with {user}: {code}. Compare it with {user} in person or on a call."
                ),
                format!("Safety code with {user}: {code}"),
            ),
            Event::Devices { user, devices } => (
                user.clone(),
                format!(
                    "{user} has {} device(s): {}",
                    devices.len(),
                    devices.join(", ")
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
