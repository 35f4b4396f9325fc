//! Files: sending one (the attach button's dialog, a drop) and saving one (the download
//! button's dialog). The transfers themselves run in the client driver; their progress is
//! shown by the composer.

use gtk::glib;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use super::LwClientWindow;
use crate::app::client::Command;
use crate::gui::i18n::gettext;

impl LwClientWindow {
    /// Sends the file at `path` to the current conversation (the attach button, a drop).
    pub fn attach_file(&self, path: &std::path::Path) {
        let Some(conv) = self.current() else { return };
        self.send_command(Command::SendFile {
            to: conv.name(),
            path: path.to_string_lossy().into_owned(),
        });
    }

    pub(super) fn choose_attachment(&self) {
        let chooser = gtk::FileChooserNative::new(
            Some(&gettext("Send a File")),
            Some(self),
            gtk::FileChooserAction::Open,
            Some(&gettext("Send")),
            Some(&gettext("Cancel")),
        );
        chooser.connect_response(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |chooser, response| {
                if response == gtk::ResponseType::Accept
                    && let Some(path) = chooser.file().and_then(|f| f.path())
                {
                    win.attach_file(&path);
                }
                chooser.destroy();
                win.imp().file_chooser.replace(None);
            }
        ));
        chooser.show();
        // A native dialog nobody holds is gone before it shows: the window keeps it
        // until it answers.
        self.imp().file_chooser.replace(Some(chooser));
    }

    /// Downloads the file of message `id` to `path` (the download button, after the dialog).
    pub fn download_to(&self, id: u64, path: &std::path::Path) {
        self.send_command(Command::Download {
            id,
            path: path.to_string_lossy().into_owned(),
            // The save dialog already asked before replacing a file.
            overwrite: true,
        });
    }

    pub(super) fn choose_download(&self, id: u64) {
        let name = self
            .current()
            .and_then(|c| c.message(id))
            .and_then(|m| m.data().file)
            .map(|f| f.name)
            .unwrap_or_else(|| "download".into());
        let chooser = gtk::FileChooserNative::new(
            Some(&gettext("Save File")),
            Some(self),
            gtk::FileChooserAction::Save,
            Some(&gettext("Save")),
            Some(&gettext("Cancel")),
        );
        chooser.set_current_name(&name);
        chooser.connect_response(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |chooser, response| {
                if response == gtk::ResponseType::Accept
                    && let Some(path) = chooser.file().and_then(|f| f.path())
                {
                    win.download_to(id, &path);
                }
                chooser.destroy();
                win.imp().file_chooser.replace(None);
            }
        ));
        chooser.show();
        // A native dialog nobody holds is gone before it shows: the window keeps it
        // until it answers.
        self.imp().file_chooser.replace(Some(chooser));
    }

    /// The transfer progress bar: (visible, fraction).
    pub fn transfer_progress(&self) -> (bool, f64) {
        self.imp().composer.transfer_progress()
    }
}
