//! Accessibility helpers for GTK 4.8.
//!
//! gtk-rs exposes `update_property` (a widget's accessible name, description, …) only from
//! GTK 4.10, and Debian 12 has 4.8, while templates can set them on any version
//! (`<accessibility>`). So widgets made in code that need an accessible name, icon-only
//! buttons, are made from a small template here.
//!
//! New messages are announced through a live status line (`announcer` in
//! `ui/client_window.ui`): a label with the `status` role, visually hidden, whose text (so
//! its accessible name) becomes "New message from bob in #general: …". GTK 4.8 has no
//! announce API (`gtk_accessible_announce` is 4.14) and no `aria-live`; a status object whose
//! name changes is what AT-SPI clients can watch (Orca reads the status line on request),
//! and the keyboard focus never moves.

use gtk4 as gtk;

/// Escapes text for an XML attribute or element.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A flat icon-only `GtkMenuButton` whose accessible name and tooltip are `label`.
pub fn icon_menu_button(icon: &str, label: &str) -> gtk::MenuButton {
    let ui = format!(
        r#"<interface><object class="GtkMenuButton" id="button">
             <property name="icon-name">{icon}</property>
             <property name="tooltip-text">{label}</property>
             <accessibility><property name="label">{label}</property></accessibility>
             <style><class name="flat"/></style>
           </object></interface>"#,
        icon = xml_escape(icon),
        label = xml_escape(label),
    );
    gtk::Builder::from_string(&ui)
        .object::<gtk::MenuButton>("button")
        .expect("the template makes a button")
}

#[cfg(test)]
mod tests {
    use super::xml_escape;

    #[test]
    fn escapes_markup() {
        assert_eq!(xml_escape(r#"<a & "b">"#), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
