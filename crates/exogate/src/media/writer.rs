//! The writing half of a media session: frames agent audio into Exotel-legal chunks and paces
//! them to real time with a bounded lead, so Exotel never gets a burst and `clear` stays
//! effective; marks follow the audio they end.

use std::collections::VecDeque;
use std::time::Duration;

use std::sync::atomic::Ordering;

use axum::extract::ws::{CloseFrame, Message};
use exotel::{OutboundEncoder, SampleRate};
use futures_util::{Sink, SinkExt};
use tokio::time::{Instant, timeout};

use super::control::{OutCmd, Outbox, Position, Shared};
use super::recording::CallRecorder;
use crate::live::LiveCall;

/// Where the call's audio is also shown or kept: the live page's meters, the recording.
#[derive(Default)]
pub(crate) struct Taps {
    pub(crate) live: Option<std::sync::Arc<LiveCall>>,
    pub(crate) rec: Option<CallRecorder>,
}

impl Taps {
    fn bot(&self, plays_at: Instant, until: Instant, pcm: Vec<u8>) {
        if let Some(live) = &self.live {
            live.bot_frame(&pcm, until);
        }
        if let Some(rec) = &self.rec {
            rec.bot(plays_at, pcm);
        }
    }

    fn cleared(&self) {
        if let Some(live) = &self.live {
            live.bot_cleared();
        }
        if let Some(rec) = &self.rec {
            rec.clear();
        }
    }
}

/// Where the writer sends: the call's WebSocket, or a plain sink in tests.
pub(crate) trait Out: Sink<Message, Error = axum::Error> + Unpin + Send {}
impl<T: Sink<Message, Error = axum::Error> + Unpin + Send> Out for T {}

/// Marks sent to Exotel and not yet echoed, oldest first, each with the audio position (bytes sent
/// before it), so stale echoes after `clear` are ignored and the played position is known.
#[derive(Default)]
pub(crate) struct MarkBook {
    pending: VecDeque<(String, u64)>,
}

impl MarkBook {
    pub(crate) fn sent(&mut self, name: &str, at: u64) {
        self.pending.push_back((name.to_string(), at));
    }

    pub(crate) fn cancel_all(&mut self) {
        self.pending.clear();
    }

    /// The mark's position if `name` was pending. Marks before it are implied played (Exotel
    /// plays in order).
    pub(crate) fn echoed(&mut self, name: &str) -> Option<u64> {
        let i = self.pending.iter().position(|(m, _)| m == name)?;
        self.pending.drain(..=i).next_back().map(|(_, at)| at)
    }
}

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
    /// When the first chunk went out.
    pub first_frame_at: Option<Instant>,
    pub hung_up: bool,
}

/// What the writer's idle check found.
enum Idle {
    /// Nothing pending.
    Done,
    /// Audio is still arriving: look again then.
    Until(Instant),
    /// The utterance ended: its padded tail, if any, and the marks that waited for it.
    Ended(Option<Vec<u8>>, Vec<String>),
}

/// An utterance that stopped without a mark: `idle` after the agent's last audio, its tail is
/// padded and handed over.
fn idle_check(ob: &mut Outbox, idle: Duration) -> Idle {
    let Some(last_audio) = ob.open_utterance() else { return Idle::Done };
    if ob.has_cmds() {
        // Chunks the session has not taken yet come first; the tail must not overtake them.
        return Idle::Until(Instant::now());
    }
    let due = last_audio.map_or_else(Instant::now, |t| t + idle);
    if Instant::now() < due {
        return Idle::Until(due);
    }
    let (tail, marks) = ob.end();
    Idle::Ended(tail, marks)
}

enum Item {
    /// A chunk, and when the agent handed over its newest audio.
    Frame(Vec<u8>, Instant),
    Mark(String),
    Close {
        code: u16,
        after_mark: Option<String>,
    },
}

struct Stream {
    rate: SampleRate,
    encoder: OutboundEncoder,
    began: Instant,
}

pub(crate) struct Writer {
    pub(crate) book: MarkBook,
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
    pub(crate) stats: WriterStats,
    /// We sent a close, or the socket failed: nothing more goes out.
    pub(crate) done: bool,
    pub(crate) taps: Taps,
    /// Where each chunk's newest-frame delay goes (the gateway's histogram).
    pub(crate) delays: Option<prometheus_client::metrics::histogram::Histogram>,
}

impl Writer {
    pub(crate) fn new(cfg: WriterConfig) -> Self {
        Self {
            book: MarkBook::default(),
            cfg,
            stream: None,
            queue: VecDeque::new(),
            play_until: Instant::now(),
            idle_at: None,
            auto_marks: 0,
            close_deadline: None,
            played_close_mark: None,
            stats: WriterStats::default(),
            done: false,
            taps: Taps::default(),
            delays: None,
        }
    }

    async fn send(&mut self, ws: &mut impl Out, text: String) {
        if self.done {
            return;
        }
        let sent = match timeout(SEND_TIMEOUT, ws.send(Message::Text(text.into()))).await {
            Ok(r) => r,
            Err(_) => Err(axum::Error::new("send timed out")),
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "media socket send failed");
            self.done = true;
        }
    }

    pub(crate) async fn close(&mut self, ws: &mut impl Out, code: u16, reason: &'static str) {
        if self.done {
            return;
        }
        self.stats.close_code = Some(code);
        let frame = CloseFrame { code, reason: reason.into() };
        let _ = timeout(SEND_TIMEOUT, ws.send(Message::Close(Some(frame)))).await;
        self.done = true;
    }

    /// Sends everything the pacing allows.
    pub(crate) async fn pump(&mut self, ws: &mut impl Out, pos: &Position) {
        while let Some(front) = self.queue.front() {
            if self.done {
                return;
            }
            let now = Instant::now();
            match front {
                Item::Frame(..) => {
                    if self.play_until > now + self.cfg.lead {
                        return;
                    }
                    let Some(Item::Frame(pcm, handed)) = self.queue.pop_front() else { return };
                    // What the gateway added: pacing holds a chunk back on purpose until Exotel's
                    // queue is down to the lead; the rest is ours.
                    let ready = self.play_until.checked_sub(self.cfg.lead).map_or(handed, |t| t.max(handed));
                    if let Some(h) = &self.delays {
                        h.observe(now.saturating_duration_since(ready).as_secs_f64());
                    }
                    self.stats.first_frame_at.get_or_insert(now);
                    let Some(s) = self.stream.as_mut() else { return };
                    let ts = s.began.elapsed().as_millis() as u64;
                    let text = s.encoder.media(&pcm, ts);
                    let dur = Duration::from_micros(s.rate.duration_us(pcm.len()));
                    let plays_at = self.play_until.max(now);
                    self.play_until = plays_at + dur;
                    pos.set_play_until(self.play_until);
                    pos.sent(pcm.len());
                    self.stats.frames_out += 1;
                    self.stats.bytes_out += pcm.len() as u64;
                    self.taps.bot(plays_at, self.play_until, pcm);
                    self.send(ws, text).await;
                }
                Item::Mark(_) => {
                    let Some(Item::Mark(name)) = self.queue.pop_front() else { return };
                    let Some(s) = self.stream.as_mut() else { return };
                    let text = s.encoder.mark(&name);
                    self.book.sent(&name, self.stats.bytes_out);
                    self.stats.marks_sent += 1;
                    self.send(ws, text).await;
                }
                Item::Close { code, after_mark } => {
                    let code = *code;
                    let waiting = after_mark.as_ref().is_some_and(|m| self.played_close_mark.as_ref() != Some(m));
                    if !waiting {
                        self.close(ws, code, "bot hung up").await;
                        return;
                    }
                    let deadline = self.play_until.max(now) + HANGUP_GRACE;
                    if now >= *self.close_deadline.get_or_insert(deadline) {
                        self.close(ws, code, "bot hung up").await;
                    }
                    return;
                }
            }
        }
    }

    /// Exotel echoed a mark: true if it was ours and still pending (then the played position
    /// moves up to it, and a hang-up waiting for it can close).
    pub(crate) fn mark_echoed(&mut self, name: &str, pos: &Position) -> bool {
        let Some(at) = self.book.echoed(name) else { return false };
        pos.played.fetch_max(at, Ordering::Relaxed);
        self.played_close_mark = Some(name.to_string());
        true
    }

    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        match self.queue.front() {
            Some(Item::Frame(..)) => at(self.play_until.checked_sub(self.cfg.lead).unwrap_or(self.play_until)),
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

    pub(crate) fn on_timer(&mut self, shared: &Shared) {
        if self.idle_at.is_some_and(|t| Instant::now() >= t) {
            self.idle_at = None;
            match shared.with_outbox(|ob| idle_check(ob, IDLE_FLUSH)).unwrap_or(Idle::Done) {
                Idle::Done => {}
                Idle::Until(t) => self.idle_at = Some(t),
                Idle::Ended(mut tail, marks) => {
                    // Marks that waited for the held-back part follow the padded tail.
                    for name in marks {
                        self.end_utterance(tail.take(), name);
                    }
                    self.auto_marks += 1;
                    let name = format!("utt-{}", self.auto_marks);
                    self.end_utterance(tail, name);
                }
            }
        }
    }

    fn end_utterance(&mut self, tail: Option<Vec<u8>>, mark: String) {
        if let Some(tail) = tail {
            self.queue.push_back(Item::Frame(tail, Instant::now()));
        }
        self.queue.push_back(Item::Mark(mark));
    }

    /// Pushed back on every chunk, so while audio flows the check never fires.
    fn arm_idle(&mut self) {
        self.idle_at = Some(Instant::now() + IDLE_FLUSH);
    }

    /// Keeps at most `cap` of audio still to play (what Exotel has and what is queued here, in
    /// order), dropping every chunk after the first that does not fit; true if any was dropped.
    fn trim_queue(&mut self, cap: Duration, pos: &Position) -> bool {
        let Some(rate) = self.stream.as_ref().map(|s| s.rate) else { return false };
        let mut budget = cap.saturating_sub(self.play_until.saturating_duration_since(Instant::now()));
        let (mut cut, mut dropped) = (false, 0usize);
        self.queue.retain(|item| {
            let Item::Frame(pcm, _) = item else { return true };
            let d = Duration::from_micros(rate.duration_us(pcm.len()));
            if !cut && d <= budget {
                budget -= d;
                return true;
            }
            cut = true;
            dropped += pcm.len();
            false
        });
        pos.sent(dropped);
        cut
    }

    fn drop_queued(&mut self, pos: &Position) {
        let dropped: usize = self.queue.iter().map(|i| if let Item::Frame(f, _) = i { f.len() } else { 0 }).sum();
        pos.sent(dropped);
        self.queue.retain(|i| matches!(i, Item::Close { .. }));
        // A hang-up whose mark will never be echoed now closes straight away.
        for item in self.queue.iter_mut() {
            if let Item::Close { after_mark, .. } = item {
                *after_mark = None;
            }
        }
        self.book.cancel_all();
        // What Exotel had queued is gone too (our clear, or Exotel's own).
        self.taps.cleared();
        self.play_until = Instant::now();
        pos.set_play_until(self.play_until);
        self.idle_at = None;
    }

    pub(crate) async fn handle(&mut self, ws: &mut impl Out, cmd: OutCmd, pos: &Position) {
        // A dead or stuck peer gets nothing more, and nothing is kept for it.
        if self.done {
            return;
        }
        match cmd {
            OutCmd::Begin { stream_sid, rate } => {
                self.stream = Some(Stream { rate, encoder: OutboundEncoder::new(&stream_sid), began: Instant::now() });
            }
            OutCmd::Chunk(chunk, handed) => {
                self.queue.push_back(Item::Frame(chunk, handed));
                self.arm_idle();
            }
            OutCmd::Touch => self.arm_idle(),
            OutCmd::Mark { tail, name } => {
                // A mark with a tail ends an utterance; one without may sit mid-utterance
                // (`mark_here`), where the idle check must keep watching.
                if tail.is_some() {
                    self.idle_at = None;
                }
                self.end_utterance(tail, name);
            }
            OutCmd::Clear => {
                self.drop_queued(pos);
                if let Some(s) = self.stream.as_mut() {
                    let text = s.encoder.clear();
                    self.stats.clears += 1;
                    self.send(ws, text).await;
                }
            }
            OutCmd::DropQueued => self.drop_queued(pos),
            OutCmd::HangUp { tail, mark, drain } => {
                if self.stats.hung_up {
                    return;
                }
                self.stats.hung_up = true;
                self.idle_at = None;
                // Audio past the cap is cut, so the utterance's tail (its end) goes with it.
                let cut = drain.is_some_and(|cap| self.trim_queue(cap, pos));
                let tail = if cut { None } else { tail };
                let has_stream = self.stream.is_some();
                if has_stream {
                    self.end_utterance(tail, mark.clone());
                }
                self.queue.push_back(Item::Close { code: 1000, after_mark: has_stream.then_some(mark) });
            }
            OutCmd::CloseNow { code, reason } => self.close(ws, code, reason).await,
            // The session handles these before the writer sees the queue.
            OutCmd::Failed(..)
            | OutCmd::Note(_)
            | OutCmd::Record(..)
            | OutCmd::Transcript(..)
            | OutCmd::Usage(_)
            | OutCmd::Operator(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// A socket that keeps what the writer sends.
    #[derive(Default)]
    struct Capture(Vec<Message>);

    impl Sink<Message> for Capture {
        type Error = axum::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            self.0.push(item);
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A peer that stopped reading: its socket never takes another message.
    struct Stuck;

    impl Sink<Message> for Stuck {
        type Error = axum::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn start_send(self: Pin<&mut Self>, _: Message) -> Result<(), Self::Error> {
            unreachable!("poll_ready never says ready")
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
    }

    impl Capture {
        fn events(&self) -> Vec<String> {
            self.0
                .iter()
                .map(|m| match m {
                    Message::Text(t) => {
                        let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                        v["event"].as_str().unwrap().to_string()
                    }
                    Message::Close(f) => format!("close {}", f.as_ref().map_or(0, |f| f.code)),
                    _ => "other".into(),
                })
                .collect()
        }
    }

    const CHUNK: usize = 3200; // 200 ms at 8 kHz

    async fn writer_with(chunks: usize, ws: &mut Capture, pos: &Position) -> Writer {
        let mut w = Writer::new(WriterConfig { lead: Duration::from_millis(300) });
        w.handle(ws, OutCmd::Begin { stream_sid: "s".into(), rate: SampleRate::Hz8000 }, pos).await;
        for _ in 0..chunks {
            w.handle(ws, OutCmd::Chunk(vec![0; CHUNK], Instant::now()), pos).await;
        }
        w
    }

    #[tokio::test(start_paused = true)]
    async fn audio_is_paced_to_real_time_with_a_bounded_lead() {
        let (mut ws, shared) = (Capture::default(), Shared::default());
        let pos = &shared.position;
        let mut w = writer_with(10, &mut ws, pos).await;
        let began = Instant::now();
        w.pump(&mut ws, pos).await;
        // 200 ms chunks, 300 ms lead: two go at once, then one per 200 ms of playing time.
        assert_eq!(w.stats.frames_out, 2);
        while w.stats.frames_out < 10 {
            let wake = w.next_wake().expect("frames are waiting, so the writer has a wake time");
            tokio::time::sleep_until(wake).await;
            // As the session does when its timer fires (the idle check included).
            w.on_timer(&shared);
            w.pump(&mut ws, pos).await;
            let ahead = w.play_until - Instant::now();
            assert!(ahead <= Duration::from_millis(300) + Duration::from_millis(200), "{ahead:?} ahead");
        }
        // A chunk goes out once what is queued at Exotel is down to the lead: the last one when
        // 300 ms + its own 200 ms remain, so 2 s of audio is sent over 1.5 s.
        assert_eq!(began.elapsed(), Duration::from_millis(1500));
        assert_eq!(pos.unsent.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn clear_drops_what_is_queued_and_stale_marks() {
        let (mut ws, pos) = (Capture::default(), Position::default());
        let mut w = writer_with(5, &mut ws, &pos).await;
        w.handle(&mut ws, OutCmd::Mark { tail: None, name: "m-1".into() }, &pos).await;
        w.pump(&mut ws, &pos).await;
        w.handle(&mut ws, OutCmd::Clear, &pos).await;
        w.pump(&mut ws, &pos).await;
        assert_eq!(ws.events(), ["media", "media", "clear"]);
        assert_eq!(w.next_wake(), None, "nothing left to pace");
        assert!(!w.mark_echoed("m-1", &pos), "a mark cleared before it was sent is stale");
    }

    #[tokio::test(start_paused = true)]
    async fn marks_give_the_played_position_and_hang_up_waits_for_its_mark() {
        let (mut ws, pos) = (Capture::default(), Position::default());
        let mut w = writer_with(1, &mut ws, &pos).await;
        w.handle(&mut ws, OutCmd::Mark { tail: None, name: "m-1".into() }, &pos).await;
        w.handle(&mut ws, OutCmd::HangUp { tail: Some(vec![0; CHUNK]), mark: "hangup-2".into(), drain: None }, &pos)
            .await;
        w.pump(&mut ws, &pos).await;
        assert_eq!(ws.events(), ["media", "mark", "media", "mark"]);
        assert!(w.mark_echoed("m-1", &pos));
        assert_eq!(pos.played.load(Ordering::Relaxed), CHUNK as u64);
        // No close before the hang-up's mark is echoed…
        w.pump(&mut ws, &pos).await;
        assert!(!w.done);
        assert!(w.mark_echoed("hangup-2", &pos));
        w.pump(&mut ws, &pos).await;
        assert_eq!(ws.events().last().map(String::as_str), Some("close 1000"));
        assert_eq!(w.stats.close_code, Some(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hang_up_whose_mark_never_comes_back_closes_after_a_grace() {
        let (mut ws, pos) = (Capture::default(), Position::default());
        let mut w = writer_with(1, &mut ws, &pos).await;
        w.handle(&mut ws, OutCmd::HangUp { tail: None, mark: "hangup-1".into(), drain: None }, &pos).await;
        w.pump(&mut ws, &pos).await;
        assert!(!w.done);
        let deadline = w.next_wake().expect("the close has a deadline");
        // The chunk plays for 200 ms, then the grace.
        assert_eq!(deadline - Instant::now(), Duration::from_millis(200) + HANGUP_GRACE);
        tokio::time::sleep_until(deadline).await;
        w.pump(&mut ws, &pos).await;
        assert!(w.done);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hang_up_with_a_drain_cap_plays_only_that_much_of_the_queue() {
        let (mut ws, shared) = (Capture::default(), Shared::default());
        let pos = &shared.position;
        // 6 s queued (30 chunks of 200 ms), two of them already at Exotel.
        let mut w = writer_with(30, &mut ws, pos).await;
        w.pump(&mut ws, pos).await;
        pos.unsent.store(28 * CHUNK as u64, Ordering::Relaxed);
        let drain = Some(Duration::from_secs(3));
        w.handle(&mut ws, OutCmd::HangUp { tail: Some(vec![0; CHUNK]), mark: "hangup-1".into(), drain }, pos).await;
        assert_eq!(pos.unsent.load(Ordering::Relaxed), 13 * CHUNK as u64, "15 chunks in all are kept");
        while !w.done {
            let wake = w.next_wake().expect("a frame or the close is due");
            tokio::time::sleep_until(wake).await;
            w.pump(&mut ws, pos).await;
            if ws.events().last().map(String::as_str) == Some("mark") {
                assert!(w.mark_echoed("hangup-1", pos));
            }
        }
        assert_eq!(w.stats.frames_out, 15, "3 s of the 6 s, and no padded tail");
        assert_eq!(ws.events().last().map(String::as_str), Some("close 1000"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_ends_the_call_after_the_send_timeout() {
        let pos = Position::default();
        let mut w = Writer::new(WriterConfig { lead: Duration::from_millis(300) });
        let began = Instant::now();
        w.handle(&mut Stuck, OutCmd::Begin { stream_sid: "s".into(), rate: SampleRate::Hz8000 }, &pos).await;
        for _ in 0..50 {
            w.handle(&mut Stuck, OutCmd::Chunk(vec![0; CHUNK], Instant::now()), &pos).await;
        }
        w.pump(&mut Stuck, &pos).await;
        assert!(w.done, "the session ends the call once the writer is done");
        assert_eq!(began.elapsed(), SEND_TIMEOUT, "one blocked send, not one per queued chunk");
        // Nothing more is queued for a dead peer: later audio is dropped, not kept.
        let queued = w.queue.len();
        w.handle(&mut Stuck, OutCmd::Chunk(vec![0; CHUNK], Instant::now()), &pos).await;
        w.pump(&mut Stuck, &pos).await;
        assert_eq!(w.queue.len(), queued);
        w.close(&mut Stuck, 1000, "call ended").await;
        assert_eq!(began.elapsed(), SEND_TIMEOUT, "no second wait to close a dead socket");
    }
}
