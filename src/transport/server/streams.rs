//! A connection's way in: the control stream's reader and one reader per conversation
//! stream (or a file transfer, handed to `files`). They decode frames, open envelopes and
//! pass inputs to the hub; a bad frame ends the connection with an error, never a panic.

use std::sync::Arc;

use tracing::info;

use super::context::ConnCtx;
use super::queue::ConnOut;
use crate::app::ids::ConvId;
use crate::app::protocol::{ControlDown, ControlUp, ConvDown, ConvUp, ErrorCode};
use crate::app::server::Input;
use crate::transport::codec::{self, FrameError};
use crate::transport::files;
use crate::transport::quic::{RecvStream, SendStream, close};

/// Reads the control stream after the login frame, until it ends.
pub(super) async fn control_reader(ctx: Arc<ConnCtx>, mut recv: RecvStream) {
    loop {
        match codec::read_frame::<_, ControlUp>(&mut recv, ctx.max_frame).await {
            Ok(Some(up)) => {
                if !ctx.to_hub(Input::Control { conn: ctx.id, up }).await {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => return protocol_error(&ctx, None, &e).await,
        }
    }
}

/// Serves one bidirectional stream the client opened after login: a conversation (first
/// frame `Open`) or a file transfer (first frame `File`).
pub(super) async fn conv_stream(ctx: Arc<ConnCtx>, send: SendStream, mut recv: RecvStream) {
    let conv = match codec::read_frame::<_, ConvUp>(&mut recv, ctx.max_frame).await {
        Ok(Some(ConvUp::File(req))) => {
            let user = ctx.logged_in.get().cloned();
            let (keys, store) = (ctx.keys.clone(), ctx.files.clone());
            // Boxed: a transfer's state is large, and a conversation stream's task would
            // otherwise carry it for its whole life.
            return Box::pin(files::serve(req, send, recv, user, keys, store)).await;
        }
        Ok(Some(ConvUp::Open { conv, after })) => {
            // Register the stream with the writer before the hub can answer on it.
            ctx.queue
                .send(ConnOut::Stream(conv.clone(), Box::new(send)))
                .await;
            let up = ConvUp::Open {
                conv: conv.clone(),
                after,
            };
            let input = Input::Conv {
                conn: ctx.id,
                conv: conv.clone(),
                up,
            };
            if !ctx.to_hub(input).await {
                return;
            }
            conv
        }
        Ok(Some(_)) => {
            let e = FrameError::Io(std::io::Error::other(
                "a conversation stream must start with Open",
            ));
            return protocol_error(&ctx, None, &e).await;
        }
        Ok(None) => return,
        Err(e) => return protocol_error(&ctx, None, &e).await,
    };
    conv_reader(&ctx, conv, recv).await;
}

/// Reads an open conversation's stream until it ends.
async fn conv_reader(ctx: &ConnCtx, conv: ConvId, mut recv: RecvStream) {
    let conv_key = conv.storage_key();
    loop {
        let up = match codec::read_frame::<_, ConvUp>(&mut recv, ctx.max_frame).await {
            Ok(Some(up)) => up,
            Ok(None) => return,
            Err(e) => return protocol_error(ctx, Some(conv), &e).await,
        };
        let up = match up {
            // A send, an edit or a reaction: its body is sealed under the session key.
            mut up @ (ConvUp::Send { .. } | ConvUp::Edit { .. } | ConvUp::React { .. }) => {
                let cmid = up.cmid().expect("a send, edit or reaction has a client id");
                let body = up.body_mut().expect("a send, edit or reaction has a body");
                match ctx
                    .keys
                    .open_sent_body(&conv_key, &ctx.user_key, cmid, body)
                {
                    Ok(plain) => {
                        *body = plain;
                        up
                    }
                    Err(e) => {
                        info!("envelope refused: {e}");
                        let down = ConvDown::Error {
                            code: ErrorCode::BadRequest,
                            message: format!("message refused: {e}"),
                            cmid: Some(cmid),
                        };
                        ctx.queue
                            .send(ConnOut::Conv(conv.clone(), Box::new(down)))
                            .await;
                        continue;
                    }
                }
            }
            ConvUp::Open { conv: other, .. } if other != conv => {
                let e = FrameError::Io(std::io::Error::other("one conversation per stream"));
                return protocol_error(ctx, Some(conv), &e).await;
            }
            other => other,
        };
        let input = Input::Conv {
            conn: ctx.id,
            conv: conv.clone(),
            up,
        };
        if !ctx.to_hub(input).await {
            return;
        }
    }
}

/// A bad frame: tell the client why and close its connection. Other clients never notice.
async fn protocol_error(ctx: &ConnCtx, conv: Option<ConvId>, e: &FrameError) {
    info!("bad frame: {e}");
    let code = match e {
        FrameError::TooLarge { .. } => ErrorCode::TooLarge,
        _ => ErrorCode::BadRequest,
    };
    let message = format!("bad frame: {e}");
    let out = match conv {
        Some(conv) => ConnOut::Conv(
            conv,
            Box::new(ConvDown::Error {
                code,
                message,
                cmid: None,
            }),
        ),
        None => ConnOut::Control(Box::new(ControlDown::Error { code, message })),
    };
    ctx.queue.send(out).await;
    ctx.queue
        .send(ConnOut::Close(close::PROTOCOL, "protocol error".into()))
        .await;
}
