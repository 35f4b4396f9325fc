#!/usr/bin/python3
"""Drives two LiveWire client windows through the accessibility tree (AT-SPI), the way a
screen reader user's tools see them: find the fields by their accessible names, sign in,
send a message, and read it back from the other window's message list.

Run by tests/a11y.rs under dbus-run-session and Xvfb:
    drive.py BIN PORT FINGERPRINT WORKDIR
It starts the two `livewire client` processes itself (and stops them, by pid)."""

import os
import re
import subprocess
import sys
import time

import pyatspi

BIN, PORT, FINGERPRINT, WORK = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
TIMEOUT = 60.0


def log(msg):
    print(msg, flush=True)


def wait_for(what, fn, timeout=TIMEOUT):
    """Polls fn() until it returns something truthy; fails after the timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = fn()
        except Exception as e:  # the tree changes under us while windows are built
            value = None
            last = e
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"FAIL: timed out waiting for {what} (last error: {last!r})")
        time.sleep(0.2)


def app_of(pid):
    desktop = pyatspi.Registry.getDesktop(0)
    for i in range(desktop.childCount):
        app = desktop.getChildAtIndex(i)
        if app is not None and app.get_process_id() == pid:
            return app
    return None


def find(root, role, name=None, contains=None):
    """The first descendant with this role and name (exact, or containing). GTK 4.8 does
    not set the `showing` state, so hidden widgets count too: the names used here are
    unique to the screen they are on."""
    def pred(acc):
        if acc.getRole() != role:
            return False
        if name is not None and acc.name != name:
            return False
        if contains is not None and contains not in (acc.name or ""):
            return False
        return True
    return pyatspi.findDescendant(root, pred, True)


def set_text(acc, text):
    acc.queryEditableText().setTextContents(text)


def press(button):
    action = button.queryAction()
    for i in range(action.nActions):
        if action.getName(i) in ("click", "activate", "press"):
            action.doAction(i)
            return
    action.doAction(0)


def start_client(name, **extra_env):
    env = dict(os.environ, GDK_BACKEND="x11", GSK_RENDERER="cairo", **extra_env)
    env.pop("GTK_A11Y", None)
    env.pop("NO_AT_BRIDGE", None)
    proc = subprocess.Popen(
        [BIN, "client", "--config-dir", os.path.join(WORK, name)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    app = wait_for(f"{name}'s client on the accessibility bus", lambda: app_of(proc.pid))
    return proc, app


def sign_in(app, user, password, trust_card):
    """Fills the connect form found by accessible names and presses Connect."""
    for label, role, value in [
        ("Server", pyatspi.ROLE_TEXT, "127.0.0.1"),
        ("Port", pyatspi.ROLE_TEXT, PORT),
        ("Username", pyatspi.ROLE_TEXT, user),
        ("Password", pyatspi.ROLE_PASSWORD_TEXT, password),
    ]:
        field = wait_for(f"the {label} field", lambda: find(app, role, label))
        set_text(field, value)
    press(wait_for("the Connect button", lambda: find(app, pyatspi.ROLE_PUSH_BUTTON, "Connect")))
    if trust_card:
        # First contact: the card shows the fingerprint; the user checks it and trusts.
        wait_for("the fingerprint on the trust card",
                 lambda: find(app, pyatspi.ROLE_LABEL, FINGERPRINT))
        press(wait_for("Trust and Connect",
                       lambda: find(app, pyatspi.ROLE_PUSH_BUTTON, "Trust and Connect")))
    # Signed in: the composer is there.
    wait_for(f"{user}'s window to show the chat",
             lambda: find(app, pyatspi.ROLE_FRAME, contains=f"— {user}"))
    return find(app, pyatspi.ROLE_TEXT, "Message")


def main():
    procs = []
    try:
        alice_proc, alice = start_client("alice")
        procs.append(alice_proc)
        composer = sign_in(alice, "alice", "a11y-" + os.urandom(6).hex(), trust_card=True)
        log("ok: alice signed in through the accessibility tree (fields found by name, trust card)")

        bob_proc, bob = start_client("bob")
        procs.append(bob_proc)
        sign_in(bob, "bob", "a11y-" + os.urandom(6).hex(), trust_card=True)
        log("ok: bob signed in the same way in a second window")

        # Every button that shows only an icon has a name (what a screen reader says).
        unnamed = []
        for b in pyatspi.findAllDescendants(alice, lambda a: a.getRole() in (
                pyatspi.ROLE_PUSH_BUTTON, pyatspi.ROLE_TOGGLE_BUTTON)):
            # GTK 4.8 names a nameless widget after its type ("GtkButton").
            if not (b.name or "").strip() or re.match(r"^(Gtk|Adw|Lw)[A-Z]", b.name):
                unnamed.append(f"{b.name!r} in {b.parent.getRoleName()} {b.parent.name!r}")
        if unnamed:
            raise SystemExit(f"FAIL: buttons without an accessible name: {unnamed}")
        log("ok: every button in alice's window has an accessible name")

        text = "hello from the accessibility tree " + os.urandom(3).hex()
        set_text(composer, text)
        press(wait_for("the Send button", lambda: find(alice, pyatspi.ROLE_PUSH_BUTTON, "Send")))

        # Bob reads it in his message list (the list, not the status line).
        def in_list():
            lst = find(bob, pyatspi.ROLE_LIST)
            return lst and find(lst, pyatspi.ROLE_LABEL, text)
        wait_for("the message in bob's message list", in_list)
        log("ok: alice's message read back from bob's message list")

        # And it was announced on bob's live status line, without moving his focus.
        status = wait_for("the announcement", lambda: find(bob, pyatspi.ROLE_STATUS_BAR, contains=text))
        log(f"ok: announced on the status line: {status.name!r}")

        # Translated: a window started in German reads its catalogue (a test one, made by
        # tests/a11y.rs with msgfmt) through gettext, templates included.
        localedir = os.environ.get("LIVEWIRE_TEST_LOCALEDIR")
        if localedir:
            carol_proc, carol = start_client(
                "carol", LIVEWIRE_LOCALEDIR=localedir, LANGUAGE="de", LC_ALL="C.UTF-8")
            procs.append(carol_proc)
            wait_for("the translated Connect button",
                     lambda: find(carol, pyatspi.ROLE_PUSH_BUTTON, "Verbinden"))
            wait_for("the translated Server field",
                     lambda: find(carol, pyatspi.ROLE_TEXT, "Server (de)"))
            log("ok: a window started in German shows the catalogue's words (button, field name)")
        log("a11y: all passed")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
