//! A raw session on the wire, as a modified client would open one: QUIC with the pinned
//! certificate and a login frame, nothing of the scripted client's own checks. For the
//! tests of what the server refuses.

use livewire::app::protocol::{ControlDown, ControlUp, PROTOCOL_VERSION};
use livewire::transport::codec;
use livewire::transport::envelope::Ephemeral;
use livewire::transport::quic::{self, Connection, Endpoint, RecvStream, SendStream};
use livewire::transport::tls::{PinningVerifier, SERVER_NAME};

use super::PASSWORD;

/// Largest frame the raw session writes.
pub const RAW_MAX_FRAME: usize = 64 * 1024;

/// Connects to `addr`, logs `user` in (with [`PASSWORD`]) and returns the connection with
/// its control stream, which must stay open for the session to last.
pub async fn raw_login(
    addr: &str,
    fingerprint: &str,
    user: &str,
) -> (Connection, SendStream, RecvStream) {
    let ep = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let cfg = quic::client_config(PinningVerifier::new(Some(fingerprint.to_owned()))).unwrap();
    let conn = ep
        .connect_with(cfg, addr.parse().unwrap(), SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (mut control, mut control_recv) = conn.open_bi().await.unwrap();
    let login = ControlUp::Login {
        version: PROTOCOL_VERSION,
        user: user.into(),
        password: PASSWORD.into(),
        session_pub: Ephemeral::new().public,
        identity_pub: [7; 32],
        hide_cursor: 0,
    };
    codec::write_frame(&mut control, &login, RAW_MAX_FRAME)
        .await
        .unwrap();
    let answer: ControlDown = codec::read_frame(&mut control_recv, codec::MAX_DOWN_FRAME)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(answer, ControlDown::LoginOk { .. }), "{answer:?}");
    (conn, control, control_recv)
}
