//! `@` completion in the composer: typing `@` and the start of a name opens a list of the
//! matching names under the cursor (the window says which names: a room's members, the
//! peer, everyone online in `#general`); Tab or Enter completes the selected one, Up and
//! Down choose, Escape closes, a click completes.

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gdk, glib};
use gtk4 as gtk;

use super::LwComposer;
use crate::app::mentions;

/// At most this many names are offered at once.
const MAX_OFFERED: usize = 8;

/// The completion list and what it completes.
#[derive(Debug)]
pub(super) struct MentionPopover {
    popover: gtk::Popover,
    list: gtk::ListBox,
    /// The names offered, in list order.
    offered: std::cell::RefCell<Vec<String>>,
}

impl MentionPopover {
    /// Detaches the popover from the text field (the composer is going away).
    pub(super) fn unparent(&self) {
        self.popover.unparent();
    }
}

/// The `@` being typed before the cursor: its offset in the buffer and the name part typed
/// so far, when the cursor ends such a token.
fn token_before(text_to_cursor: &str) -> Option<(usize, String)> {
    let at = text_to_cursor.rfind('@')?;
    let typed = &text_to_cursor[at + 1..];
    if !typed
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return None;
    }
    // The same boundary rule as the server's: `bob@example.org` is no mention.
    if mentions::tokens(&text_to_cursor[at..]).is_empty() && !typed.is_empty() {
        return None;
    }
    let before = text_to_cursor[..at].chars().next_back();
    if before.is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@')) {
        return None;
    }
    Some((text_to_cursor[..at].chars().count(), typed.to_owned()))
}

impl LwComposer {
    /// Where the names `@` completes come from; called once by the window.
    pub fn set_mention_source(&self, source: impl Fn() -> Vec<String> + 'static) {
        let imp = self.imp();
        imp.mention_source.replace(Some(Box::new(source)));
        let list = gtk::ListBox::builder()
            .selection_mode(gtk::SelectionMode::Single)
            .css_classes(["mention-list"])
            .build();
        let popover = gtk::Popover::builder()
            .child(&list)
            .autohide(false)
            .has_arrow(false)
            .position(gtk::PositionType::Top)
            .can_focus(false)
            .build();
        popover.set_parent(&*imp.text_view);
        list.connect_row_activated(glib::clone!(
            #[weak(rename_to = composer)]
            self,
            move |_, row| composer.complete_mention(row.index())
        ));
        imp.mention_popover.replace(Some(MentionPopover {
            popover,
            list,
            offered: Default::default(),
        }));
        let buffer = imp.text_view.buffer();
        buffer.connect_changed(glib::clone!(
            #[weak(rename_to = composer)]
            self,
            move |_| composer.update_mentions()
        ));
        buffer.connect_mark_set(glib::clone!(
            #[weak(rename_to = composer)]
            self,
            move |_, _, mark| {
                if mark.name().as_deref() == Some("insert") {
                    composer.update_mentions();
                }
            }
        ));
    }

    /// The names the completion list offers now (empty when it is closed), for tests.
    pub fn mention_offers(&self) -> Vec<String> {
        match self.imp().mention_popover.borrow().as_ref() {
            Some(p) if p.popover.is_visible() => p.offered.borrow().clone(),
            _ => Vec::new(),
        }
    }

    /// Types `text` at the cursor, as keys would (for tests).
    pub fn type_text(&self, text: &str) {
        self.imp().text_view.buffer().insert_at_cursor(text);
    }

    /// A key while the list is open: Tab or Enter completes, Up and Down choose, Escape
    /// closes. Whether the key was used.
    pub(super) fn mention_key(&self, key: gdk::Key) -> bool {
        let (list, n) = {
            let p = self.imp().mention_popover.borrow();
            let Some(p) = p.as_ref().filter(|p| p.popover.is_visible()) else {
                return false;
            };
            (p.list.clone(), p.offered.borrow().len() as i32)
        };
        let selected = list.selected_row().map_or(0, |r| r.index());
        match key {
            gdk::Key::Tab | gdk::Key::Return | gdk::Key::KP_Enter | gdk::Key::ISO_Left_Tab => {
                self.complete_mention(selected);
            }
            gdk::Key::Down => {
                list.select_row(list.row_at_index((selected + 1) % n.max(1)).as_ref());
            }
            gdk::Key::Up => {
                list.select_row(list.row_at_index((selected + n - 1) % n.max(1)).as_ref());
            }
            gdk::Key::Escape => self.hide_mentions(),
            _ => return false,
        }
        true
    }

    /// Replaces the `@` token before the cursor with the `index`th name offered.
    pub fn complete_mention(&self, index: i32) {
        let Some(name) = self
            .imp()
            .mention_popover
            .borrow()
            .as_ref()
            .and_then(|p| p.offered.borrow().get(index.max(0) as usize).cloned())
        else {
            return;
        };
        let buffer = self.imp().text_view.buffer();
        let cursor = buffer.iter_at_mark(&buffer.get_insert());
        let before = buffer.text(&buffer.start_iter(), &cursor, false);
        let Some((at, _)) = token_before(&before) else {
            return;
        };
        let mut start = buffer.iter_at_offset(at as i32);
        let mut end = cursor;
        buffer.delete(&mut start, &mut end);
        buffer.insert(&mut start, &format!("@{name} "));
        buffer.place_cursor(&start);
        self.hide_mentions();
    }

    fn hide_mentions(&self) {
        if let Some(p) = self.imp().mention_popover.borrow().as_ref() {
            p.offered.borrow_mut().clear();
            p.popover.popdown();
        }
    }

    /// Opens, refills or closes the list after an edit or a cursor move.
    fn update_mentions(&self) {
        let imp = self.imp();
        let buffer = imp.text_view.buffer();
        let cursor = buffer.iter_at_mark(&buffer.get_insert());
        let before = buffer.text(&buffer.start_iter(), &cursor, false);
        let Some((_, typed)) = token_before(&before) else {
            return self.hide_mentions();
        };
        let names = match imp.mention_source.borrow().as_ref() {
            Some(source) => source(),
            None => Vec::new(),
        };
        let typed = typed.to_ascii_lowercase();
        let mut offered: Vec<String> = names
            .into_iter()
            .filter(|n| n.to_ascii_lowercase().starts_with(&typed))
            .collect();
        offered.sort_by_key(|n| n.to_ascii_lowercase());
        offered.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        offered.truncate(MAX_OFFERED);
        if offered.is_empty() {
            return self.hide_mentions();
        }
        let p = imp.mention_popover.borrow();
        let Some(p) = p.as_ref() else { return };
        while let Some(row) = p.list.row_at_index(0) {
            p.list.remove(&row);
        }
        for name in &offered {
            let label = gtk::Label::builder()
                .label(format!("@{name}"))
                .xalign(0.0)
                .margin_start(6)
                .margin_end(6)
                .build();
            p.list.append(&label);
        }
        p.list.select_row(p.list.row_at_index(0).as_ref());
        p.offered.replace(offered);
        // Under the cursor, where the name goes.
        let rect = imp.text_view.iter_location(&cursor);
        let (x, y) =
            imp.text_view
                .buffer_to_window_coords(gtk::TextWindowType::Widget, rect.x(), rect.y());
        p.popover
            .set_pointing_to(Some(&gdk::Rectangle::new(x, y, 1, rect.height())));
        p.popover.popup();
    }
}

#[cfg(test)]
mod tests {
    use super::token_before;

    #[test]
    fn the_token_under_the_cursor() {
        assert_eq!(token_before("hi @bo"), Some((3, "bo".into())));
        assert_eq!(token_before("@"), Some((0, String::new())));
        assert_eq!(token_before("hé @Ca"), Some((3, "Ca".into())));
        assert_eq!(token_before("mail bob@ex"), None);
        assert_eq!(token_before("@bob hi"), None);
        assert_eq!(token_before("no at"), None);
    }
}
