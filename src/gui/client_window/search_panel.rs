//! `LwSearchPanel`: the search bar of the client window (a `GtkSearchBar` holding a
//! `GtkSearchEntry`) and the list of matching messages under it — conversation, author,
//! time and the text — newest first.
//!
//! Typing emits `search` with the query (after the entry's short delay; an empty field
//! clears the list instead); activating a result emits `result-activated` with its
//! conversation and message id. The window sends the search and shows the answer with
//! [`LwSearchPanel::set_results`]; the panel never talks to the client.

use std::cell::RefCell;
use std::sync::OnceLock;

use gtk::glib;
use gtk::glib::subclass::Signal;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use crate::app::client::SearchItem;
use crate::gui::i18n::{gettext, ngettext_with};
use crate::gui::message_row::format_time;

mod imp {
    use super::*;

    #[derive(Default, gtk::CompositeTemplate)]
    #[template(file = "../../../ui/client_window/search_panel.ui")]
    pub struct LwSearchPanel {
        #[template_child]
        pub(super) bar: TemplateChild<gtk::SearchBar>,
        #[template_child]
        pub(super) entry: TemplateChild<gtk::SearchEntry>,
        #[template_child]
        pub(super) status_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) results_scroll: TemplateChild<gtk::ScrolledWindow>,
        #[template_child]
        pub(super) results: TemplateChild<gtk::ListBox>,
        /// The results shown, in the list's order.
        pub(super) items: RefCell<Vec<SearchItem>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for LwSearchPanel {
        const NAME: &'static str = "LwSearchPanel";
        type Type = super::LwSearchPanel;
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
    impl LwSearchPanel {
        #[template_callback]
        fn on_search_changed(&self) {
            self.obj().search_now();
        }

        #[template_callback]
        fn on_activate(&self) {
            // Enter opens the newest match, as a search field in a chat app does.
            if !self.items.borrow().is_empty() {
                self.obj().activate_result(0);
            }
        }

        #[template_callback]
        fn on_row_activated(&self, row: &gtk::ListBoxRow) {
            if let Ok(i) = usize::try_from(row.index()) {
                self.obj().activate_result(i);
            }
        }
    }

    impl ObjectImpl for LwSearchPanel {
        fn constructed(&self) {
            self.parent_constructed();
            self.bar.connect_entry(&*self.entry);
        }

        fn signals() -> &'static [Signal] {
            static SIGNALS: OnceLock<Vec<Signal>> = OnceLock::new();
            SIGNALS.get_or_init(|| {
                vec![
                    // The user searches for this text (never blank).
                    Signal::builder("search")
                        .param_types([String::static_type()])
                        .build(),
                    // The user picked a result: conversation label and message id.
                    Signal::builder("result-activated")
                        .param_types([String::static_type(), i64::static_type()])
                        .build(),
                ]
            })
        }
    }

    impl WidgetImpl for LwSearchPanel {}
    impl BoxImpl for LwSearchPanel {}
}

glib::wrapper! {
    /// The search bar and its results.
    pub struct LwSearchPanel(ObjectSubclass<imp::LwSearchPanel>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

/// One result's row: "#design · bob · 14:05" over the message's text.
fn result_row(item: &SearchItem) -> gtk::ListBoxRow {
    let place = gtk::Label::builder()
        .label(format!("{} · {}", item.conv, item.from))
        .xalign(0.0)
        .hexpand(true)
        .ellipsize(gtk::pango::EllipsizeMode::End)
        .css_classes(["heading"])
        .build();
    let time = gtk::Label::builder()
        .label(format_time(item.ts))
        .css_classes(["dim-label", "caption"])
        .build();
    let top = gtk::Box::new(gtk::Orientation::Horizontal, 6);
    top.append(&place);
    top.append(&time);
    let snippet = gtk::Label::builder()
        .label(&item.text)
        .xalign(0.0)
        .wrap(true)
        .lines(2)
        .ellipsize(gtk::pango::EllipsizeMode::End)
        .build();
    let content = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .spacing(2)
        .margin_top(6)
        .margin_bottom(6)
        .margin_start(8)
        .margin_end(8)
        .build();
    content.append(&top);
    content.append(&snippet);
    gtk::ListBoxRow::builder()
        .child(&content)
        .activatable(true)
        .build()
}

impl LwSearchPanel {
    /// The search bar (its `search-mode-enabled` is whether the panel is open).
    pub fn bar(&self) -> gtk::SearchBar {
        self.imp().bar.clone()
    }

    /// Whether the bar is open.
    pub fn is_open(&self) -> bool {
        self.imp().bar.is_search_mode()
    }

    /// Opens the bar with the field focused (the search button and Ctrl+F), or closes it.
    pub fn set_open(&self, open: bool) {
        self.imp().bar.set_search_mode(open);
        if open {
            self.imp().entry.grab_focus();
        }
    }

    /// Types `query` into the field and searches at once (tests, and the window's
    /// callers that already have the words).
    pub fn search_for(&self, query: &str) {
        self.imp().entry.set_text(query);
        self.search_now();
    }

    /// Closes the bar and forgets the query and its results (at logout: the next user of
    /// the window must not see them).
    pub fn reset(&self) {
        self.set_open(false);
        self.imp().entry.set_text("");
        self.set_results(Vec::new());
        self.imp().status_label.set_visible(false);
    }

    /// Emits `search` for the field's text, or clears the list when it is blank.
    fn search_now(&self) {
        let query = self.imp().entry.text().to_string();
        if query.trim().is_empty() {
            self.set_results(Vec::new());
            self.imp().status_label.set_visible(false);
            return;
        }
        self.emit_by_name::<()>("search", &[&query]);
    }

    /// Shows the answer to the last search.
    pub fn set_results(&self, items: Vec<SearchItem>) {
        let imp = self.imp();
        while let Some(row) = imp.results.row_at_index(0) {
            imp.results.remove(&row);
        }
        for item in &items {
            imp.results.append(&result_row(item));
        }
        imp.results_scroll.set_visible(!items.is_empty());
        let status = match items.len() {
            0 => gettext("No messages found"),
            n => ngettext_with(
                "{count} message",
                "{count} messages",
                n as u32,
                &[("count", &n)],
            ),
        };
        imp.status_label.set_text(&status);
        imp.status_label
            .set_visible(!imp.entry.text().trim().is_empty());
        imp.items.replace(items);
    }

    /// The results shown, in order.
    pub fn results(&self) -> Vec<SearchItem> {
        self.imp().items.borrow().clone()
    }

    /// The status line ("3 messages", "No messages found"), if shown.
    pub fn status(&self) -> Option<String> {
        let label = &self.imp().status_label;
        label.is_visible().then(|| label.text().to_string())
    }

    /// Picks the `index`-th result: emits `result-activated`.
    pub fn activate_result(&self, index: usize) {
        let Some(item) = self.imp().items.borrow().get(index).cloned() else {
            return;
        };
        let id = i64::try_from(item.id).unwrap_or(i64::MAX);
        self.emit_by_name::<()>("result-activated", &[&item.conv, &id]);
    }
}
