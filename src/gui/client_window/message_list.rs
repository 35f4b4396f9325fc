//! `LwMessageList`: the messages of the conversation shown, in a virtualised
//! `GtkListView` of [`LwMessageRow`]s (only rows near the visible part exist), with an empty
//! state, "stick to the newest message" scrolling, and a drop target for files.
//!
//! It emits `load-older` when scrolled to the top and `file-dropped` when a file is dropped
//! on it; the window turns those into commands.

use std::cell::{Cell, RefCell};
use std::sync::OnceLock;

use gtk::glib::subclass::Signal;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gdk, gio, glib};
use gtk4 as gtk;

use crate::gui::message_row::LwMessageRow;
use crate::gui::models::{LwConversation, LwMessage};

/// Consecutive messages of one sender closer than this share one name label.
const GROUP_GAP_MS: u64 = 5 * 60 * 1000;

/// How close to the bottom (pixels) still counts as "at the newest message".
const BOTTOM_SLACK: f64 = 48.0;

mod imp {
    use super::*;

    #[derive(Default, gtk::CompositeTemplate)]
    #[template(file = "../../../ui/client_window/message_list.ui")]
    pub struct LwMessageList {
        #[template_child]
        pub(super) empty_state: TemplateChild<gtk::Box>,
        #[template_child]
        pub(super) scroller: TemplateChild<gtk::ScrolledWindow>,
        #[template_child]
        pub(super) list_view: TemplateChild<gtk::ListView>,
        /// The conversation shown.
        pub(super) conversation: RefCell<Option<LwConversation>>,
        /// The list's model: the shown conversation's messages.
        pub(super) selection: RefCell<Option<gtk::NoSelection>>,
        /// How long an author may delete for everyone (for the rows' menus), seconds.
        pub(super) delete_window_secs: Cell<u64>,
        /// Keep the list scrolled to the newest message.
        pub(super) stick_to_bottom: Cell<bool>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for LwMessageList {
        const NAME: &'static str = "LwMessageList";
        type Type = super::LwMessageList;
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
    impl LwMessageList {
        #[template_callback]
        fn on_scrolled(&self, adj: &gtk::Adjustment) {
            let at_bottom = adj.value() >= adj.upper() - adj.page_size() - BOTTOM_SLACK;
            self.stick_to_bottom.set(at_bottom);
        }

        #[template_callback]
        fn on_grown(&self, _pspec: &glib::ParamSpec, adj: &gtk::Adjustment) {
            if self.stick_to_bottom.get() {
                adj.set_value(adj.upper() - adj.page_size());
            }
        }

        #[template_callback]
        fn on_edge_reached(&self, pos: gtk::PositionType) {
            if pos == gtk::PositionType::Top {
                self.obj().emit_by_name::<()>("load-older", &[]);
            }
        }
    }

    impl ObjectImpl for LwMessageList {
        fn signals() -> &'static [Signal] {
            static SIGNALS: OnceLock<Vec<Signal>> = OnceLock::new();
            SIGNALS.get_or_init(|| {
                vec![
                    // Scrolled to the top: older messages are wanted.
                    Signal::builder("load-older").build(),
                    // A file was dropped on the list; the handler says whether it is taken.
                    Signal::builder("file-dropped")
                        .param_types([gio::File::static_type()])
                        .return_type::<bool>()
                        .build(),
                ]
            })
        }

        fn constructed(&self) {
            self.parent_constructed();
            self.stick_to_bottom.set(true);
            let obj = self.obj();
            obj.setup_list();
            // A drop target takes a `gio::File`, which a template cannot declare.
            let drop = gtk::DropTarget::new(gio::File::static_type(), gdk::DragAction::COPY);
            drop.connect_drop(glib::clone!(
                #[weak]
                obj,
                #[upgrade_or]
                false,
                move |_, value, _, _| match value.get::<gio::File>() {
                    Ok(file) => obj.emit_by_name::<bool>("file-dropped", &[&file]),
                    Err(_) => false,
                }
            ));
            self.scroller.add_controller(drop);
        }
    }

    impl WidgetImpl for LwMessageList {}
    impl BoxImpl for LwMessageList {}
}

glib::wrapper! {
    /// The message list of the client window.
    pub struct LwMessageList(ObjectSubclass<imp::LwMessageList>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

impl LwMessageList {
    fn setup_list(&self) {
        let imp = self.imp();
        let selection = gtk::NoSelection::new(None::<gio::ListModel>);
        imp.selection.replace(Some(selection.clone()));
        let factory = gtk::SignalListItemFactory::new();
        factory.connect_setup(|_, item| {
            if let Some(item) = item.downcast_ref::<gtk::ListItem>() {
                item.set_activatable(false);
                item.set_selectable(false);
                // The row takes the keyboard focus (Tab into the list, Up and Down between
                // messages, Menu or Shift+F10 for its menu), with a visible focus ring.
                let row = LwMessageRow::new();
                row.set_focusable(true);
                item.set_child(Some(&row));
            }
        });
        factory.connect_bind(glib::clone!(
            #[weak(rename_to = list)]
            self,
            move |_, item| {
                if let Some(item) = item.downcast_ref::<gtk::ListItem>() {
                    list.bind_row(item);
                }
            }
        ));
        factory.connect_unbind(|_, item| {
            if let Some(row) = item
                .downcast_ref::<gtk::ListItem>()
                .and_then(|i| i.child())
                .and_downcast::<LwMessageRow>()
            {
                row.unbind();
            }
        });
        selection.connect_items_changed(glib::clone!(
            #[weak(rename_to = list)]
            self,
            move |sel, _, _, _| list.imp().empty_state.set_visible(sel.n_items() == 0)
        ));
        imp.list_view.set_model(Some(&selection));
        imp.list_view.set_factory(Some(&factory));
        // Rows added at the end while the list sticks to the newest message (the first page
        // after sign-in, a catch-up, a live message): scroll to the last item by its
        // position. Following `upper` alone is not enough: GtkListView keeps its anchor
        // row (the first one, when rows arrive in an empty list) in place and moves the
        // adjustment itself, which reads as the user scrolling up, so the first frames of
        // a page of 100 showed its oldest rows, not the newest (issue 14, "GUI first
        // frame", docs/BENCHMARKS.md). Connected after the list view took the model, so
        // the view knows the new rows when this runs.
        selection.connect_items_changed(glib::clone!(
            #[weak(rename_to = list)]
            self,
            move |model, position, _removed, added| {
                if added > 0
                    && position + added == model.n_items()
                    && list.imp().stick_to_bottom.get()
                {
                    // Now, and again at the start of the first frame in which the view
                    // has a size: before its first allocation (the chat page is shown at
                    // sign-in, with the first page of messages) GTK 4.8 drops the scroll.
                    list.scroll_to_newest();
                    let ticks = std::cell::Cell::new(0u32);
                    list.add_tick_callback(move |list, _| {
                        ticks.set(ticks.get() + 1);
                        let adj = list.imp().scroller.vadjustment();
                        if adj.page_size() <= 0.0 && ticks.get() < 120 {
                            return glib::ControlFlow::Continue;
                        }
                        if list.imp().stick_to_bottom.get() {
                            list.scroll_to_newest();
                        }
                        glib::ControlFlow::Break
                    });
                }
            }
        ));
    }

    /// Shows one message in a recycled row. The sender's name heads a run of their
    /// messages in a room.
    fn bind_row(&self, item: &gtk::ListItem) {
        let (Some(row), Some(msg)) = (
            item.child().and_downcast::<LwMessageRow>(),
            item.item().and_downcast::<LwMessage>(),
        ) else {
            return;
        };
        let current = self.imp().conversation.borrow().clone();
        let private = current.as_ref().is_some_and(|c| c.is_private());
        let prev = item
            .position()
            .checked_sub(1)
            .and_then(|p| current.as_ref().and_then(|c| c.messages().item(p)))
            .and_downcast::<LwMessage>();
        let d = msg.data();
        let continues = prev.is_some_and(|p| {
            let p = p.data();
            p.from == d.from && d.ts.saturating_sub(p.ts) < GROUP_GAP_MS
        });
        row.bind(
            &msg,
            !private && !continues,
            self.imp().delete_window_secs.get(),
        );
        row.bind_extras(current.as_ref());
    }

    /// Shows `conv` (none: an empty list), scrolled to its newest message.
    pub fn set_conversation(&self, conv: Option<&LwConversation>) {
        let imp = self.imp();
        imp.conversation.replace(conv.cloned());
        if let Some(sel) = imp.selection.borrow().as_ref() {
            match conv {
                Some(c) => sel.set_model(Some(&c.messages())),
                None => sel.set_model(None::<&gio::ListModel>),
            }
        }
        if conv.is_some() {
            self.scroll_to_newest();
        }
    }

    /// Sets how long an author may delete for everyone, for the rows' context menus.
    pub fn set_delete_window_secs(&self, secs: u64) {
        self.imp().delete_window_secs.set(secs);
    }

    /// Scrolls to the newest message and keeps it in view as messages arrive.
    ///
    /// Right after the model changed (another conversation shown), the adjustment still
    /// has the old list's height: a value taken from it can point past the new rows, and
    /// GtkListView then warns that it "failed to scroll to given position". So the list
    /// view scrolls to its last item itself, and `on_grown` keeps the bottom in view as
    /// the rows' real heights come in.
    pub fn scroll_to_newest(&self) {
        let imp = self.imp();
        imp.stick_to_bottom.set(true);
        let n = imp.selection.borrow().as_ref().map_or(0, |s| s.n_items());
        if n > 0 {
            let _ = imp
                .list_view
                .activate_action("list.scroll-to-item", Some(&(n - 1).to_variant()));
        }
    }

    /// Keeps the newest message in view as messages arrive (after sending one).
    pub fn stick_to_bottom(&self) {
        self.imp().stick_to_bottom.set(true);
    }

    /// Scrolls to a fraction of the list's height (0 top, 1 bottom).
    pub fn scroll_to(&self, fraction: f64) {
        let adj = self.imp().scroller.vadjustment();
        let range = (adj.upper() - adj.page_size()).max(0.0);
        adj.set_value(range * fraction.clamp(0.0, 1.0));
    }

    /// The texts of the rows that exist and are mapped right now: what a person sees.
    pub fn rendered_messages(&self) -> Vec<String> {
        fn walk(w: &gtk::Widget, out: &mut Vec<String>) {
            if let Some(row) = w.downcast_ref::<LwMessageRow>() {
                if row.is_mapped()
                    && let Some(text) = row.shown_text()
                {
                    out.push(text);
                }
                return;
            }
            let mut child = w.first_child();
            while let Some(c) = child {
                walk(&c, out);
                child = c.next_sibling();
            }
        }
        let mut out = Vec::new();
        walk(self.imp().list_view.upcast_ref(), &mut out);
        out
    }
}

impl LwMessageList {
    /// The row showing message `id`, if the list view has built it.
    fn row_for(&self, id: crate::app::ids::MsgId) -> Option<LwMessageRow> {
        fn walk(w: &gtk::Widget, id: u64) -> Option<LwMessageRow> {
            if let Some(row) = w.downcast_ref::<LwMessageRow>() {
                return (row.is_mapped() && row.message().is_some_and(|m| m.id() == id))
                    .then(|| row.clone());
            }
            let mut child = w.first_child();
            while let Some(c) = child {
                if let Some(found) = walk(&c, id) {
                    return Some(found);
                }
                child = c.next_sibling();
            }
            None
        }
        walk(self.imp().list_view.upcast_ref(), id)
    }

    /// Scrolls message `id` of the conversation shown into the middle of the view and
    /// highlights it for a moment. `false` while its row is not built yet (the scroll
    /// moved towards it; call again on the next frame), or when it is not loaded.
    pub fn reveal_message(&self, id: crate::app::ids::MsgId) -> bool {
        let imp = self.imp();
        let Some(conv) = imp.conversation.borrow().clone() else {
            return false;
        };
        let Some(msg) = conv.message(id) else {
            return false;
        };
        let store = conv.messages();
        let Some(pos) = store.find(&msg) else {
            return false;
        };
        imp.stick_to_bottom.set(false);
        let adj = imp.scroller.vadjustment();
        let Some(row) = self.row_for(id) else {
            // Not built: the list view scrolls to it and builds its row (its own action,
            // which knows the rows' real heights; setting the adjustment from an estimate
            // can point past the rows it has and makes GtkListView warn).
            let _ = imp
                .list_view
                .activate_action("list.scroll-to-item", Some(&pos.to_variant()));
            return false;
        };
        if let Some((_, y)) = row.translate_coordinates(&*imp.list_view, 0.0, 0.0) {
            let centre = y + f64::from(row.height()) / 2.0 - adj.page_size() / 2.0;
            adj.set_value((adj.value() + centre).clamp(0.0, adj.upper() - adj.page_size()));
        }
        row.add_css_class("highlight");
        glib::timeout_add_local_once(std::time::Duration::from_millis(1500), move || {
            row.remove_css_class("highlight")
        });
        true
    }
}

impl LwMessageList {
    /// The rows the list view has built right now, as `(text, quote, reactions)`: what a
    /// person sees of replies and reactions, for tests.
    pub fn rendered_rows(&self) -> Vec<(String, Option<String>, Vec<String>)> {
        fn walk(w: &gtk::Widget, out: &mut Vec<(String, Option<String>, Vec<String>)>) {
            if let Some(row) = w.downcast_ref::<LwMessageRow>() {
                if row.is_mapped()
                    && let Some(text) = row.shown_text()
                {
                    out.push((text, row.shown_quote(), row.shown_reactions()));
                }
                return;
            }
            let mut child = w.first_child();
            while let Some(c) = child {
                walk(&c, out);
                child = c.next_sibling();
            }
        }
        let mut out = Vec::new();
        walk(self.imp().list_view.upcast_ref(), &mut out);
        out
    }
}
