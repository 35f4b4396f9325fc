//! Translations: GNU gettext through glibc (`gettext-rs` with `gettext-system`), one text
//! domain, `livewire`, for the Rust strings and the templates (`<interface
//! domain="livewire">`, `translatable="yes"`).
//!
//! The template of the catalogue is `po/livewire.pot`, made by `scripts/update-po.sh`;
//! compiled catalogues are looked up in `/usr/share/locale` (where the Debian package would
//! install them) or in `$LIVEWIRE_LOCALEDIR`.

use std::sync::Once;

/// The gettext text domain.
pub const DOMAIN: &str = "livewire";

/// Binds the text domain (once; before any template is parsed, since GtkBuilder translates
/// while it parses). A failure leaves the strings untranslated, which is what a missing
/// catalogue does anyway.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let dir =
            std::env::var("LIVEWIRE_LOCALEDIR").unwrap_or_else(|_| "/usr/share/locale".into());
        if let Err(e) = gettextrs::bindtextdomain(DOMAIN, dir)
            .and_then(|_| gettextrs::bind_textdomain_codeset(DOMAIN, "UTF-8"))
            .and_then(|_| gettextrs::textdomain(DOMAIN))
        {
            tracing::warn!("translations unavailable: {e}");
        }
    });
}

/// The translation of `msgid` (itself when there is none).
pub fn gettext(msgid: &str) -> String {
    gettextrs::gettext(msgid)
}

/// The translation of `msgid` with its `{name}` placeholders filled in. Placeholders are
/// named (not positional) so a translation may put them in any order.
pub fn gettext_with(msgid: &str, args: &[(&str, &dyn std::fmt::Display)]) -> String {
    let mut text = gettext(msgid);
    for (name, value) in args {
        text = text.replace(&format!("{{{name}}}"), &value.to_string());
    }
    text
}

/// The translation of `singular` or `plural`, as the language's rules say for `n`, with
/// its `{name}` placeholders filled in.
pub fn ngettext_with(
    singular: &str,
    plural: &str,
    n: u32,
    args: &[(&str, &dyn std::fmt::Display)],
) -> String {
    let mut text = gettextrs::ngettext(singular, plural, n);
    for (name, value) in args {
        text = text.replace(&format!("{{{name}}}"), &value.to_string());
    }
    text
}

/// Marks `msgid` for the catalogue without translating it (a constant translated where it
/// is shown, with [`gettext`]).
pub const fn n_(msgid: &'static str) -> &'static str {
    msgid
}
