//! A call's socket, split in two owners: the read side ([`In`], in the call's task) and the
//! send side ([`Out`], in its shard). `ws://` uses the load generator's own client ([`ws`]);
//! `wss://` uses tungstenite (split through a lock, with its own buffering), which costs more
//! per frame but speaks TLS.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, StreamExt};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::Plan;
use super::ws::{self, HEADROOM, MaskKeys, OP_CLOSE, OP_PONG, OP_TEXT, encode_frame, frame_in_place};
use crate::SimError;
use crate::call::Ws;

pub(super) async fn connect(plan: &Plan) -> Result<(In, Out), SimError> {
    if !plan.use_tungstenite {
        let (r, w) = ws::connect(&plan.url, &plan.redacted, plan.auth.as_ref(), plan.connect_timeout).await?;
        return Ok((In::Raw(r), Out::Raw(w)));
    }
    let ws = crate::call::connect(
        &plan.url,
        &plan.redacted,
        plan.auth.as_ref(),
        plan.connect_timeout,
        Some(plan.ws_config),
        None,
    )
    .await?;
    let (sink, stream) = ws.split();
    Ok((In::Tls { stream, last: None }, Out::Tls { sink, queue: VecDeque::new(), unflushed: false }))
}

/// A message from the server.
#[derive(Debug)]
pub(super) enum Incoming<'a> {
    Text(&'a [u8]),
    Binary(&'a [u8]),
    Close(Option<u16>, String),
    /// Ours to answer (tungstenite answers its own).
    Ping(Vec<u8>),
    Other,
}

pub(super) enum In {
    Raw(ws::Reader),
    Tls { stream: SplitStream<Ws>, last: Option<Message> },
}

impl In {
    /// The next message; `Ok(None)` when the connection ended.
    pub(super) async fn next(&mut self) -> Result<Option<Incoming<'_>>, String> {
        match self {
            Self::Raw(r) => Ok(r.next().await?.map(|ev| match ev {
                ws::Event::Text(t) => Incoming::Text(t),
                ws::Event::Binary(b) => Incoming::Binary(b),
                ws::Event::Close(code, reason) => Incoming::Close(code, reason),
                ws::Event::Ping(p) => Incoming::Ping(p),
                ws::Event::Pong => Incoming::Other,
            })),
            Self::Tls { stream, last } => {
                *last = match stream.next().await {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(e.to_string()),
                    Some(Ok(m)) => Some(m),
                };
                Ok(Some(match last.as_ref() {
                    Some(Message::Text(t)) => Incoming::Text(t.as_bytes()),
                    Some(Message::Binary(b)) => Incoming::Binary(b),
                    Some(Message::Close(f)) => Incoming::Close(
                        f.as_ref().map(|f| u16::from(f.code)),
                        f.as_ref().map(|f| f.reason.to_string()).unwrap_or_default(),
                    ),
                    _ => Incoming::Other,
                }))
            }
        }
    }
}

/// The send side. Nothing here waits: what the socket cannot take now stays queued for
/// [`Out::retry`].
pub(super) enum Out {
    Raw(ws::Writer),
    Tls { sink: SplitSink<Ws, Message>, queue: VecDeque<Message>, unflushed: bool },
}

impl Out {
    /// Sends a text message; `Ok(true)` when everything queued is out.
    pub(super) fn text(&mut self, text: String, keys: &mut MaskKeys, frame: &mut Vec<u8>) -> Result<bool, String> {
        match self {
            Self::Raw(w) => {
                frame.clear();
                encode_frame(frame, OP_TEXT, text.as_bytes(), keys.next_key());
                w.send(frame).map_err(|e| e.to_string())
            }
            Self::Tls { queue, .. } => {
                queue.push_back(Message::Text(text.into()));
                self.retry()
            }
        }
    }

    /// Sends `wire[HEADROOM..]` (already JSON text) as a text message; for our own client the
    /// frame is built in place, for tungstenite it becomes a `Message`.
    pub(super) fn text_in_place(&mut self, wire: &mut [u8], keys: &mut MaskKeys) -> Result<bool, String> {
        match self {
            Self::Raw(w) => {
                let start = frame_in_place(wire, OP_TEXT, keys.next_key());
                w.send(&wire[start..]).map_err(|e| e.to_string())
            }
            Self::Tls { queue, .. } => {
                let text = String::from_utf8_lossy(&wire[HEADROOM..]).into_owned();
                queue.push_back(Message::Text(text.into()));
                self.retry()
            }
        }
    }

    /// Close 1000.
    pub(super) fn close(&mut self, keys: &mut MaskKeys, frame: &mut Vec<u8>) -> Result<bool, String> {
        match self {
            Self::Raw(w) => {
                frame.clear();
                encode_frame(frame, OP_CLOSE, &1000u16.to_be_bytes(), keys.next_key());
                w.send(frame).map_err(|e| e.to_string())
            }
            Self::Tls { queue, .. } => {
                queue.push_back(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })));
                self.retry()
            }
        }
    }

    pub(super) fn pong(&mut self, payload: &[u8], keys: &mut MaskKeys, frame: &mut Vec<u8>) -> Result<bool, String> {
        match self {
            Self::Raw(w) => {
                frame.clear();
                encode_frame(frame, OP_PONG, payload, keys.next_key());
                w.send(frame).map_err(|e| e.to_string())
            }
            Self::Tls { queue, .. } => {
                queue.push_back(Message::Pong(Bytes::copy_from_slice(payload)));
                self.retry()
            }
        }
    }

    /// Pushes out whatever is queued; `Ok(true)` when nothing is left.
    pub(super) fn retry(&mut self) -> Result<bool, String> {
        match self {
            Self::Raw(w) => w.retry().map_err(|e| e.to_string()),
            Self::Tls { sink, queue, unflushed } => {
                pump(sink, queue, unflushed, &mut Context::from_waker(Waker::noop())).map_err(|e| e.to_string())
            }
        }
    }
}

/// Polls tungstenite's sink with a no-op waker: the shard retries on its own clock.
fn pump(
    sink: &mut SplitSink<Ws, Message>,
    queue: &mut VecDeque<Message>,
    unflushed: &mut bool,
    cx: &mut Context<'_>,
) -> Result<bool, tokio_tungstenite::tungstenite::Error> {
    let mut sink = Pin::new(sink);
    while let Some(msg) = queue.pop_front() {
        match sink.as_mut().poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => {
                queue.push_front(msg);
                return Ok(false);
            }
        }
        sink.as_mut().start_send(msg)?;
        *unflushed = true;
    }
    if *unflushed {
        match sink.as_mut().poll_flush(cx) {
            Poll::Ready(Ok(())) => *unflushed = false,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(false),
        }
    }
    Ok(true)
}
