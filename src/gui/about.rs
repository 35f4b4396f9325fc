//! The About window (`AdwAboutWindow`), shared by the client and server windows.

use adw::prelude::*;
use gtk4 as gtk;

use crate::gui::APP_ID;
use crate::gui::i18n::gettext;

/// Shows the About window over `parent`.
pub fn show_about(parent: &impl IsA<gtk::Window>) -> adw::AboutWindow {
    let about = adw::AboutWindow::builder()
        .transient_for(parent)
        .modal(true)
        .application_name("LiveWire")
        .application_icon(APP_ID)
        .version(env!("CARGO_PKG_VERSION"))
        .comments(gettext(
            "Self-hosted real-time chat over QUIC, with end-to-end encrypted private messages",
        ))
        .developer_name(gettext("The LiveWire developers"))
        .license_type(gtk::License::Custom)
        .license(gettext("MIT or Apache-2.0, at your option."))
        // Translators: put your names here, one per line.
        .translator_credits(gettext("translator-credits"))
        .build();
    about.present();
    about
}
