//! Read state on a conversation model: the user's read marker and the unread and mention
//! counts that follow from it, who is typing, and how far the other members have read
//! ("seen by"). No widgets here: the window shows it (`client_window::read_state`).

use std::time::{Duration, Instant};

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use crate::app::client::TYPING_SHOWN;
use crate::app::ids::Seq;
use crate::gui::models::{LwConversation, LwMessage};

impl LwConversation {
    /// The user's read marker here, if known.
    pub fn read_upto(&self) -> Option<Seq> {
        self.imp().read.borrow().upto
    }

    /// Moves the read marker forward (never back); whether it moved.
    pub fn advance_read(&self, upto: Seq) -> bool {
        let mut r = self.imp().read.borrow_mut();
        if r.upto.is_some_and(|u| u >= upto) {
            return false;
        }
        r.upto = Some(upto);
        true
    }

    /// Whether a `read` may go out now; if one went out recently, notes that one is owed.
    pub fn read_send_now(&self) -> bool {
        let mut r = self.imp().read.borrow_mut();
        if r.read_throttled {
            r.read_owed = true;
            return false;
        }
        r.read_throttled = true;
        true
    }

    /// The throttle after a `read` ended: whether one is owed (then the throttle goes on
    /// for it), else the next `read` may go out at once.
    pub fn read_throttle_ended(&self) -> bool {
        let mut r = self.imp().read.borrow_mut();
        if std::mem::take(&mut r.read_owed) {
            return true;
        }
        r.read_throttled = false;
        false
    }

    /// The newest sequence number of a message shown (notices aside).
    pub fn last_message_seq(&self) -> Option<Seq> {
        let store = self.messages();
        (0..store.n_items())
            .rev()
            .filter_map(|i| store.item(i).and_downcast::<LwMessage>())
            .map(|m| m.data())
            .find(|d| !d.notice)
            .map(|d| d.seq)
    }

    /// Recounts unread messages and mentions from the marker: others' messages after it.
    /// Nothing changes while the marker is unknown (the running counts stand).
    pub fn recount_unread(&self) {
        let Some(upto) = self.read_upto() else {
            return;
        };
        let (mut unread, mut mentions) = (0, 0);
        for d in self.snapshot() {
            if d.seq > upto && !d.own && !d.notice && d.text.is_some() {
                unread += 1;
                mentions += u32::from(d.mention);
            }
        }
        self.set_unread(unread);
        self.set_mentions(mentions);
    }

    /// `name` is typing now.
    pub fn typing_started(&self, name: &str) {
        let mut r = self.imp().read.borrow_mut();
        let key = name.to_ascii_lowercase();
        r.typists.insert(key, (name.to_owned(), Instant::now()));
    }

    /// `name`'s message arrived: they are done typing it.
    pub fn typing_done(&self, name: &str) {
        let key = name.to_ascii_lowercase();
        self.imp().read.borrow_mut().typists.remove(&key);
    }

    /// Who is typing (notices younger than [`TYPING_SHOWN`]), by name.
    pub fn typing_names(&self) -> Vec<String> {
        let mut r = self.imp().read.borrow_mut();
        r.typists.retain(|_, (_, at)| at.elapsed() < TYPING_SHOWN);
        r.typists.values().map(|(n, _)| n.clone()).collect()
    }

    /// "bob is typing…", "bob and carol are typing…", or "" when nobody is.
    pub fn typing_text(&self) -> String {
        match &self.typing_names()[..] {
            [] => String::new(),
            [one] => format!("{one} is typing…"),
            [a, b] => format!("{a} and {b} are typing…"),
            [a, rest @ ..] => format!("{a} and {} others are typing…", rest.len()),
        }
    }

    /// How long until the oldest typing notice expires (when to look again).
    pub fn typing_expires_in(&self) -> Option<Duration> {
        let r = self.imp().read.borrow();
        r.typists
            .values()
            .map(|(_, at)| TYPING_SHOWN.saturating_sub(at.elapsed()))
            .min()
    }

    /// `name` has read up to `upto` (kept only if further than known).
    pub fn set_seen(&self, name: &str, upto: Seq) {
        let mut r = self.imp().read.borrow_mut();
        let e = r
            .seen
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| (name.to_owned(), 0));
        e.1 = e.1.max(upto);
    }

    /// Forgets every seen receipt (receipts turned off).
    pub fn clear_seen(&self) {
        self.imp().read.borrow_mut().seen.clear();
    }

    /// "Seen by bob" for the user's newest own message, when someone has read it.
    pub fn seen_text(&self) -> String {
        let Some(own) = self
            .snapshot()
            .into_iter()
            .rev()
            .find(|d| d.own && !d.notice)
            .map(|d| d.seq)
        else {
            return String::new();
        };
        let r = self.imp().read.borrow();
        let names: Vec<&str> = r
            .seen
            .values()
            .filter(|(_, upto)| *upto >= own)
            .map(|(n, _)| n.as_str())
            .collect();
        if names.is_empty() {
            String::new()
        } else {
            crate::gui::i18n::gettext_with("Seen by {names}", &[("names", &names.join(", "))])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first `read` goes out at once; later ones wait for the throttle to end, and
    /// only one is owed however many came meanwhile.
    #[test]
    fn reads_are_throttled_to_one_owed() {
        let c = LwConversation::new("#general");
        assert!(c.read_send_now(), "the first goes out");
        assert!(!c.read_send_now(), "held");
        assert!(!c.read_send_now(), "held again");
        assert!(c.read_throttle_ended(), "one is owed");
        assert!(!c.read_throttle_ended(), "and only one");
        assert!(c.read_send_now(), "free again");
    }
}
