//! The writer task: the only owner of the socket's sending half. It frames agent audio into
//! Exotel-legal chunks and paces them to real time with a bounded lead, so Exotel never gets a
//! burst and `clear` stays effective; marks follow the audio they end.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use exotel::{OutboundEncoder, SampleRate};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};

use std::sync::Mutex;

use super::control::{Idle, MarkBook, OutCmd, Outbox, idle_check};

/// A partial chunk left this long with no new audio ends the utterance (padded, marked).
const IDLE_FLUSH: Duration = Duration::from_millis(250);
/// How long past the expected end of playback a hang-up waits for its mark's echo.
const HANGUP_GRACE: Duration = Duration::from_secs(2);
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterConfig {
    pub lead: Duration,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct WriterStats {
    pub frames_out: u64,
    pub bytes_out: u64,
    pub marks_sent: u64,
    pub clears: u64,
    /// The close code we sent, if we closed.
    pub close_code: Option<u16>,
    pub hung_up: bool,
}

enum Item {
    Frame(Vec<u8>),
    Mark(String),
    Close { code: u16, after_mark: Option<String> },
}

struct Stream {
    rate: SampleRate,
    encoder: OutboundEncoder,
    began: Instant,
}

struct Writer {
    sink: SplitSink<WebSocket, Message>,
    book: Arc<MarkBook>,
    outbox: Arc<Mutex<Outbox>>,
    cfg: WriterConfig,
    stream: Option<Stream>,
    queue: VecDeque<Item>,
    /// When Exotel will have played everything sent so far (our estimate).
    play_until: Instant,
    /// When to check whether the agent's utterance has ended (it gets a mark of ours).
    idle_at: Option<Instant>,
    auto_marks: u64,
    close_deadline: Option<Instant>,
    played_close_mark: Option<String>,
    stats: WriterStats,
    done: bool,
}

pub(crate) async fn run(
    sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::UnboundedReceiver<OutCmd>,
    book: Arc<MarkBook>,
    outbox: Arc<Mutex<Outbox>>,
    cfg: WriterConfig,
    closed: oneshot::Sender<()>,
) -> WriterStats {
    let now = Instant::now();
    let mut w = Writer {
        sink,
        book,
        outbox,
        cfg,
        stream: None,
        queue: VecDeque::new(),
        play_until: now,
        idle_at: None,
        auto_marks: 0,
        close_deadline: None,
        played_close_mark: None,
        stats: WriterStats::default(),
        done: false,
    };
    let timer = sleep_until(Instant::now());
    tokio::pin!(timer);
    while !w.done {
        if let Err(e) = w.pump().await {
            tracing::debug!(error = %e, "media socket send failed");
            break;
        }
        if w.done {
            break;
        }
        let wake = w.next_wake();
        // One timer per call, moved rather than re-created on every wake.
        if let Some(t) = wake {
            if timer.deadline() != t {
                timer.as_mut().reset(t);
            }
        }
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(cmd) => {
                    if let Err(e) = w.handle(cmd).await {
                        tracing::debug!(error = %e, "media socket send failed");
                        break;
                    }
                }
                None => break,
            },
            _ = &mut timer, if wake.is_some() => w.on_timer(),
        }
    }
    let _ = closed.send(());
    w.stats
}

impl Writer {
    async fn send(&mut self, text: String) -> Result<(), axum::Error> {
        match timeout(SEND_TIMEOUT, self.sink.send(Message::Text(text.into()))).await {
            Ok(r) => r,
            Err(_) => Err(axum::Error::new("send timed out")),
        }
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        self.stats.close_code = Some(code);
        let frame = CloseFrame { code, reason: reason.into() };
        let _ = timeout(SEND_TIMEOUT, self.sink.send(Message::Close(Some(frame)))).await;
        self.done = true;
    }

    /// Sends everything the pacing allows.
    async fn pump(&mut self) -> Result<(), axum::Error> {
        while let Some(front) = self.queue.front() {
            let now = Instant::now();
            match front {
                Item::Frame(_) => {
                    if self.play_until > now + self.cfg.lead {
                        return Ok(());
                    }
                    let Some(Item::Frame(pcm)) = self.queue.pop_front() else { return Ok(()) };
                    let Some(s) = self.stream.as_mut() else { return Ok(()) };
                    let ts = s.began.elapsed().as_millis() as u64;
                    let text = s.encoder.media(&pcm, ts);
                    let dur = Duration::from_micros(s.rate.duration_us(pcm.len()));
                    self.play_until = self.play_until.max(now) + dur;
                    self.stats.frames_out += 1;
                    self.stats.bytes_out += pcm.len() as u64;
                    self.send(text).await?;
                }
                Item::Mark(_) => {
                    let Some(Item::Mark(name)) = self.queue.pop_front() else { return Ok(()) };
                    let Some(s) = self.stream.as_mut() else { return Ok(()) };
                    let text = s.encoder.mark(&name);
                    self.book.sent(&name);
                    self.stats.marks_sent += 1;
                    self.send(text).await?;
                }
                Item::Close { code, after_mark } => {
                    let code = *code;
                    let waiting = after_mark.as_ref().is_some_and(|m| self.played_close_mark.as_ref() != Some(m));
                    if !waiting {
                        self.close(code, "bot hung up").await;
                        return Ok(());
                    }
                    let deadline = self.play_until.max(now) + HANGUP_GRACE;
                    if now >= *self.close_deadline.get_or_insert(deadline) {
                        self.close(code, "bot hung up").await;
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn next_wake(&self) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        match self.queue.front() {
            Some(Item::Frame(_)) => at(self.play_until.checked_sub(self.cfg.lead).unwrap_or(self.play_until)),
            Some(Item::Close { .. }) => {
                if let Some(d) = self.close_deadline {
                    at(d)
                }
            }
            _ => {}
        }
        if let Some(t) = self.idle_at {
            at(t);
        }
        wake
    }

    fn on_timer(&mut self) {
        if self.idle_at.is_some_and(|t| Instant::now() >= t) {
            self.idle_at = None;
            match idle_check(&self.outbox, IDLE_FLUSH) {
                Idle::Done => {}
                Idle::Until(t) => self.idle_at = Some(t),
                Idle::Ended(tail) => {
                    self.auto_marks += 1;
                    let name = format!("utt-{}", self.auto_marks);
                    self.end_utterance(tail, name);
                }
            }
        }
    }

    fn end_utterance(&mut self, tail: Option<Vec<u8>>, mark: String) {
        if let Some(tail) = tail {
            self.queue.push_back(Item::Frame(tail));
        }
        self.queue.push_back(Item::Mark(mark));
    }

    /// Pushed back on every chunk, so while audio flows the check never fires.
    fn arm_idle(&mut self) {
        self.idle_at = Some(Instant::now() + IDLE_FLUSH);
    }

    fn drop_queued(&mut self) {
        self.queue.retain(|i| matches!(i, Item::Close { .. }));
        // A hang-up whose mark will never be echoed now closes straight away.
        for item in self.queue.iter_mut() {
            if let Item::Close { after_mark, .. } = item {
                *after_mark = None;
            }
        }
        self.book.cancel_all();
        self.play_until = Instant::now();
        self.idle_at = None;
    }

    async fn handle(&mut self, cmd: OutCmd) -> Result<(), axum::Error> {
        match cmd {
            OutCmd::Begin { stream_sid, rate } => {
                self.stream = Some(Stream { rate, encoder: OutboundEncoder::new(&stream_sid), began: Instant::now() });
            }
            OutCmd::Chunk(chunk) => {
                self.queue.push_back(Item::Frame(chunk));
                self.arm_idle();
            }
            OutCmd::Touch => self.arm_idle(),
            OutCmd::Mark { tail, name } => {
                self.end_utterance(tail, name);
                self.idle_at = None;
            }
            OutCmd::Clear => {
                self.drop_queued();
                if let Some(s) = self.stream.as_mut() {
                    let text = s.encoder.clear();
                    self.stats.clears += 1;
                    self.send(text).await?;
                }
            }
            OutCmd::DropQueued => self.drop_queued(),
            OutCmd::HangUp { tail, mark } => {
                if self.stats.hung_up {
                    return Ok(());
                }
                self.stats.hung_up = true;
                self.idle_at = None;
                let has_stream = self.stream.is_some();
                if has_stream {
                    self.end_utterance(tail, mark.clone());
                }
                self.queue.push_back(Item::Close { code: 1000, after_mark: has_stream.then_some(mark) });
            }
            OutCmd::MarkPlayed(name) => self.played_close_mark = Some(name),
            OutCmd::CloseNow { code, reason } => self.close(code, reason).await,
            OutCmd::Shutdown => self.close(1000, "call ended").await,
        }
        Ok(())
    }
}
