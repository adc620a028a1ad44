//! Running one call: Exotel's side of the Voicebot WebSocket, from the dynamic-URL lookup to the
//! closing handshake.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use exotel::event::{Dtmf, Mark, Media, MediaFormat, Start, Stop, StopReason};
use exotel::redact::redact_url;
use exotel::{InboundEvent, OutboundEvent, SampleRate};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::error::excerpt;
use crate::playback::Playback;
use crate::report::ClearSeen;
use crate::validate::{self, BotFrame, Finding, Violation, rule};
use crate::{CallConfig, CallReport, Injected, SimError, Target};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long we wait for the bot's half of the closing handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// DTMF key hold time we report; Exotel's examples show 100–200 ms.
const DTMF_DURATION_MS: u64 = 100;

/// Plays Exotel for one call. `Err` only when no WebSocket session could be had; everything
/// after the handshake, including the bot dropping the connection, is in the report.
pub async fn run_call(cfg: CallConfig) -> Result<CallReport, SimError> {
    if cfg.frame_ms == 0 {
        return Err(SimError::Config("frame_ms must be at least 1".into()));
    }
    // Before dialling: a bad WAV should not cost the bot a half-open session.
    let caller_pcm = cfg.audio.render(cfg.sample_rate)?;
    let trust = cfg.ca_cert.as_deref().map(crate::tls::trusting).transpose()?;
    let ws_url = match &cfg.target {
        Target::Ws(url) => url.clone(),
        Target::Dynamic(url) => resolve_dynamic(&cfg, url, trust.as_ref()).await?,
    };
    let (url, auth) = prepare_ws_url(&ws_url, &cfg)?;
    let redacted = redact_url(url.as_str());
    let tls = trust.map(|t| Connector::Rustls(t.ws));
    let ws = connect(&url, &redacted, auth.as_ref(), cfg.connect_timeout, None, tls).await?;
    tracing::debug!(url = %redacted, "WebSocket session open");
    Ok(Session::new(&cfg, redacted).run(ws, caller_pcm).await)
}

/// The applet's dynamic URL: a GET carrying the call details Exotel's other URL applets send,
/// answered by `{"url":"wss://..."}` (docs/protocol.md §2.3).
pub(crate) async fn resolve_dynamic(
    cfg: &CallConfig,
    raw: &str,
    trust: Option<&crate::tls::Trust>,
) -> Result<String, SimError> {
    let redacted = redact_url(raw);
    let mut url = Url::parse(raw).map_err(|e| SimError::InvalidUrl { url: redacted.clone(), reason: e.to_string() })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SimError::InvalidUrl { url: redacted, reason: "a dynamic URL must be http:// or https://".into() });
    }
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in [
            ("CallSid", cfg.call_sid.as_str()),
            ("CallFrom", cfg.from.as_str()),
            ("CallTo", cfg.to.as_str()),
            ("From", cfg.from.as_str()),
            ("To", cfg.to.as_str()),
            ("Direction", "incoming"),
        ] {
            q.append_pair(k, v);
        }
        for (k, v) in &cfg.custom_parameters {
            q.append_pair(k, v);
        }
    }
    let request_failed = |e: reqwest::Error| SimError::DynamicRequest {
        url: redacted.clone(),
        // The full URL carries the caller's number; the redacted one is already in the message.
        reason: e.without_url().to_string(),
    };
    let mut client = reqwest::Client::builder().timeout(cfg.connect_timeout);
    for cert in trust.map(|t| t.http.clone()).unwrap_or_default() {
        client = client.add_root_certificate(cert);
    }
    let client = client.build().map_err(request_failed)?;
    let response = client.get(url).send().await.map_err(request_failed)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(request_failed)?;
    if status != 200 {
        return Err(SimError::DynamicStatus { url: redacted, status, body: excerpt(&body) });
    }
    let bad_body =
        |reason: &str| SimError::DynamicBody { url: redacted.clone(), reason: reason.into(), body: excerpt(&body) };
    let value: Value = serde_json::from_str(&body).map_err(|e| bad_body(&format!("not JSON: {e}")))?;
    let ws = value.get("url").and_then(Value::as_str).ok_or_else(|| bad_body("no \"url\" string"))?;
    let scheme_ok = Url::parse(ws).is_ok_and(|u| matches!(u.scheme(), "ws" | "wss"));
    if !scheme_ok {
        return Err(bad_body("\"url\" is not a ws:// or wss:// URL"));
    }
    Ok(ws.to_string())
}

/// The URL Exotel dials and the Basic credentials it sends: userinfo moves into the header
/// (Exotel never sends it in the URL), and the rate goes into the query as the applet puts it.
pub(crate) fn prepare_ws_url(raw: &str, cfg: &CallConfig) -> Result<(Url, Option<(String, String)>), SimError> {
    let invalid = |reason: String| SimError::InvalidUrl { url: redact_url(raw), reason };
    let mut url = Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(invalid("a WebSocket URL must be ws:// or wss://".into()));
    }
    let mut auth = None;
    if !url.username().is_empty() || url.password().is_some() {
        auth = Some((percent_decode(url.username()), percent_decode(url.password().unwrap_or(""))));
        url.set_username("").map_err(|()| invalid("cannot strip the username".into()))?;
        url.set_password(None).map_err(|()| invalid("cannot strip the password".into()))?;
    }
    if let Some(explicit) = &cfg.basic_auth {
        auth = Some(explicit.clone());
    }
    let has_rate = url.query_pairs().any(|(k, _)| k == "sample-rate" || k == "sample_rate");
    if cfg.put_rate_in_url && cfg.sample_rate != SampleRate::Hz8000 && !has_rate {
        url.query_pairs_mut().append_pair("sample-rate", &cfg.sample_rate.hz().to_string());
    }
    Ok((url, auth))
}

/// URL userinfo is percent-encoded; the header carries the plain text.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let hex_at = |i: usize| bytes.get(i).and_then(|&b| (b as char).to_digit(16));
    while i < bytes.len() {
        match (bytes[i], hex_at(i + 1), hex_at(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `config` tunes the socket's buffers (the load generator keeps them small); `None` is
/// tungstenite's default. `tls` replaces the public roots (`--ca-cert`).
pub(crate) async fn connect(
    url: &Url,
    redacted: &str,
    auth: Option<&(String, String)>,
    timeout: Duration,
    config: Option<WebSocketConfig>,
    tls: Option<Connector>,
) -> Result<Ws, SimError> {
    let invalid = |reason: String| SimError::InvalidUrl { url: redacted.to_string(), reason };
    let mut request = url.as_str().into_client_request().map_err(|e| invalid(e.to_string()))?;
    if let Some((user, pass)) = auth {
        let value = format!("Basic {}", B64.encode(format!("{user}:{pass}")));
        let value = HeaderValue::from_str(&value).map_err(|_| invalid("credentials are not header-safe".into()))?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    // Nagle would hold 20 ms frames back behind delayed ACKs and blur the real-time pacing.
    let handshake = tokio_tungstenite::connect_async_tls_with_config(request, config, true, tls);
    match tokio::time::timeout(timeout, handshake).await {
        Err(_) => Err(SimError::ConnectTimeout { url: redacted.to_string(), timeout }),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            Err(SimError::Handshake {
                url: redacted.to_string(),
                status: response.status().as_u16(),
                body: excerpt(&body),
            })
        }
        Ok(Err(e)) => Err(SimError::Connect { url: redacted.to_string(), reason: e.to_string() }),
        Ok(Ok((ws, _response))) => Ok(ws),
    }
}

/// What the writer task puts on the socket.
enum Out {
    Text(String),
    Binary(Vec<u8>),
    Close,
}

/// Owns the sink, so a bot that stops reading can stall our sends but never our reads.
async fn writer(
    mut sink: SplitSink<Ws, Message>,
    mut rx: mpsc::UnboundedReceiver<Out>,
    failed: mpsc::UnboundedSender<String>,
) {
    while let Some(out) = rx.recv().await {
        let (msg, last) = match out {
            Out::Text(t) => (Message::Text(t.into()), false),
            Out::Binary(b) => (Message::Binary(b.into()), false),
            Out::Close => (Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })), true),
        };
        if let Err(e) = sink.send(msg).await {
            let _ = failed.send(format!("send failed: {e}"));
            return;
        }
        if last {
            return;
        }
    }
}

/// Something the caller does at an offset from the first media frame.
enum Scheduled {
    /// Frame number (from 0) and its byte range in the caller PCM.
    Media {
        index: u64,
        from: usize,
        to: usize,
    },
    Dtmf(String),
    Inject(Injected),
}

fn schedule(cfg: &CallConfig, pcm_len: usize) -> Vec<(Duration, Scheduled)> {
    let frame_bytes = cfg.frame_ms as usize * cfg.sample_rate.bytes_per_ms();
    let mut plan: Vec<(Duration, Scheduled)> = (0..pcm_len.div_ceil(frame_bytes))
        .map(|i| {
            let from = i * frame_bytes;
            let at = Duration::from_millis(i as u64 * u64::from(cfg.frame_ms));
            (at, Scheduled::Media { index: i as u64, from, to: (from + frame_bytes).min(pcm_len) })
        })
        .collect();
    plan.extend(cfg.dtmf.iter().map(|(at, digit)| (*at, Scheduled::Dtmf(digit.clone()))));
    plan.extend(cfg.inject.iter().map(|(at, frame)| (*at, Scheduled::Inject(frame.clone()))));
    // Stable: at equal offsets media goes first, then DTMF, then injected frames.
    plan.sort_by_key(|(at, _)| *at);
    plan
}

/// Why the live part of the call ended.
enum End {
    /// The caller is done and the bot has gone quiet (or the tail limit hit).
    TailDone,
    /// The bot sent a Close frame.
    BotClosed,
    /// The connection broke without a closing handshake.
    Lost(String),
}

struct Session<'a> {
    cfg: &'a CallConfig,
    handshake_at: Instant,
    out: Option<mpsc::UnboundedSender<Out>>,
    seq: u64,
    playback: Playback,
    report: CallReport,
    first_frame_at: Option<Instant>,
    first_bot_media_at: Option<Instant>,
    last_bot_media_at: Option<Instant>,
}

impl<'a> Session<'a> {
    fn new(cfg: &'a CallConfig, ws_url: String) -> Self {
        Self {
            cfg,
            handshake_at: Instant::now(),
            out: None,
            seq: 0,
            playback: Playback::new(cfg.sample_rate),
            report: CallReport { ws_url, sample_rate: cfg.sample_rate, ..CallReport::default() },
            first_frame_at: None,
            first_bot_media_at: None,
            last_bot_media_at: None,
        }
    }

    async fn run(mut self, ws: Ws, caller_pcm: Vec<u8>) -> CallReport {
        let (sink, mut stream) = ws.split();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (fail_tx, mut fail_rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(writer(sink, out_rx, fail_tx));
        self.out = Some(out_tx);

        self.send(Out::Text(InboundEvent::Connected { protocol: None, version: None }.to_json()));
        let start = self.start_event();
        self.send(Out::Text(start));

        let plan = schedule(self.cfg, caller_pcm.len());
        let t0 = Instant::now();
        let mut next = 0;
        let mut tail_start: Option<Instant> = None;
        let mut reader_done = false;

        let end = loop {
            let now = Instant::now();
            self.echo_reached_marks(now);
            while let Some((_, item)) = plan.get(next).filter(|(at, _)| t0 + *at <= now) {
                self.send_scheduled(item, &caller_pcm, now);
                next += 1;
            }
            if next == plan.len() && tail_start.is_none() {
                tail_start = Some(now);
            }
            let mut wake = plan.get(next).map(|(at, _)| t0 + *at);
            wake = earliest(wake, self.playback.next_mark_at());
            if let Some(tail_start) = tail_start {
                let hard = tail_start + self.cfg.max_tail;
                let quiet_from = self.last_bot_media_at.map_or(tail_start, |t| t.max(tail_start));
                let playing_until =
                    [self.playback.drained_at(), self.playback.next_mark_at()].into_iter().flatten().max();
                let soft = (quiet_from + self.cfg.idle_tail).max(playing_until.unwrap_or(now));
                if now >= hard || (now >= soft && self.playback.is_idle()) {
                    break End::TailDone;
                }
                // Never a deadline in the past here: that would spin instead of waiting.
                wake = earliest(wake, Some(soft.min(hard).max(now + Duration::from_millis(1))));
            }
            let sleep =
                tokio::time::sleep_until(tokio::time::Instant::from_std(wake.unwrap_or_else(|| far_future(now))));
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(Ok(msg)) => {
                        if let Some(end) = self.on_message(msg) {
                            break end;
                        }
                    }
                    Some(Err(e)) => {
                        reader_done = true;
                        break End::Lost(e.to_string());
                    }
                    None => {
                        reader_done = true;
                        break End::Lost("connection ended without a closing handshake".into());
                    }
                },
                () = sleep => {}
                Some(reason) = fail_rx.recv() => break End::Lost(reason),
            }
        };

        match end {
            End::TailDone => {
                if self.cfg.send_stop {
                    let stop = self.stop_event();
                    self.send(Out::Text(stop));
                    self.report.stop_sent = true;
                }
                self.send(Out::Close);
            }
            End::BotClosed => {
                // A hang-up is 1000 (1001 while the bot shuts down); anything else is a failure
                // a user testing the bot must hear about.
                if let Some(code) = self.report.close_code.filter(|c| !matches!(c, 1000 | 1001)) {
                    let detail = format!("closed with {code} {:?}", self.report.close_reason);
                    self.violation(Instant::now(), Finding::new(rule::ABNORMAL_CLOSE, detail));
                }
            }
            End::Lost(reason) => {
                self.report.closed_by_bot = true;
                self.violation(Instant::now(), Finding::new(rule::CONNECTION_LOST, reason.clone()));
                self.report.close_reason = reason;
            }
        }
        // The writer drains what is queued (our Close included), then exits.
        self.out = None;
        if !reader_done {
            self.finish_close(&mut stream).await;
        }
        writer.abort();

        let now = Instant::now();
        self.report.duration = now - self.handshake_at;
        self.report.first_frame_at = self.first_frame_at;
        if let (Some(sent), Some(heard)) = (self.first_frame_at, self.first_bot_media_at) {
            self.report.first_audio_latency = Some(heard.saturating_duration_since(sent));
        }
        self.report.played_pcm =
            std::mem::replace(&mut self.playback, Playback::new(self.cfg.sample_rate)).into_played();
        self.report
    }

    /// Reads until the closing handshake completes (or [`CLOSE_WAIT`] passes). Reading is what
    /// sends our reply to a bot-initiated Close. Whatever the bot says meanwhile is ignored: the
    /// call is over for Exotel once `stop` is sent.
    async fn finish_close(&mut self, stream: &mut SplitStream<Ws>) {
        let initiated_by_us = !self.report.closed_by_bot;
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        let mut got_close = !initiated_by_us;
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => {
                    self.record_close(frame);
                    got_close = true;
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => {
                    if !got_close {
                        self.report.close_reason = format!("no close reply: {e}");
                    }
                    return;
                }
                Ok(None) => {
                    if !got_close {
                        self.report.close_reason = "connection ended without a close reply".into();
                    }
                    return;
                }
                Err(_) => {
                    if !got_close {
                        self.report.close_reason = format!("no close reply within {} s", CLOSE_WAIT.as_secs());
                    }
                    return;
                }
            }
        }
    }

    fn record_close(&mut self, frame: Option<CloseFrame>) {
        match frame {
            Some(f) => {
                self.report.close_code = Some(u16::from(f.code));
                self.report.close_reason = f.reason.to_string();
            }
            None => {
                self.report.close_code = None;
                self.report.close_reason = "close frame without a status code".into();
            }
        }
    }

    fn send(&self, out: Out) {
        // A send can only fail once the writer is gone, and the writer reports why itself.
        if let Some(tx) = &self.out {
            let _ = tx.send(out);
        }
    }

    fn next_seq(&mut self) -> Option<u64> {
        self.seq += 1;
        Some(self.seq)
    }

    fn start_event(&mut self) -> String {
        let cfg = self.cfg;
        InboundEvent::Start(Start {
            sequence_number: self.next_seq(),
            stream_sid: Some(cfg.stream_sid.clone()),
            call_sid: Some(cfg.call_sid.clone()),
            account_sid: Some(cfg.account_sid.clone()),
            from: Some(cfg.from.clone()),
            to: Some(cfg.to.clone()),
            custom_parameters: cfg.custom_parameters.clone(),
            media_format: MediaFormat {
                encoding: Some("audio/x-raw".into()),
                sample_rate: Some(cfg.sample_rate.hz().to_string()),
                bit_rate: Some("16".into()),
                channels: None,
            },
        })
        .to_json()
    }

    fn stop_event(&mut self) -> String {
        let cfg = self.cfg;
        InboundEvent::Stop(Stop {
            sequence_number: self.next_seq(),
            stream_sid: Some(cfg.stream_sid.clone()),
            call_sid: Some(cfg.call_sid.clone()),
            account_sid: Some(cfg.account_sid.clone()),
            reason: StopReason::parse(Some(&cfg.stop_reason)),
        })
        .to_json()
    }

    fn send_scheduled(&mut self, item: &Scheduled, pcm: &[u8], now: Instant) {
        match item {
            Scheduled::Media { index, from, to } => {
                let frame = &pcm[*from..*to];
                let event = InboundEvent::Media(Media {
                    sequence_number: self.next_seq(),
                    stream_sid: Some(self.cfg.stream_sid.clone()),
                    chunk: Some(index + 1),
                    timestamp: Some(index * u64::from(self.cfg.frame_ms)),
                    payload: B64.encode(frame),
                });
                self.send(Out::Text(event.to_json()));
                self.report.sent_pcm.extend_from_slice(frame);
                self.report.frames_sent += 1;
                self.first_frame_at.get_or_insert(now);
            }
            Scheduled::Dtmf(digit) => {
                let event = InboundEvent::Dtmf(Dtmf {
                    sequence_number: self.next_seq(),
                    stream_sid: Some(self.cfg.stream_sid.clone()),
                    digit: digit.clone(),
                    duration_ms: Some(DTMF_DURATION_MS),
                });
                self.send(Out::Text(event.to_json()));
            }
            Scheduled::Inject(Injected::Text(t)) => self.send(Out::Text(t.clone())),
            Scheduled::Inject(Injected::Binary(b)) => self.send(Out::Binary(b.clone())),
        }
    }

    fn echo_reached_marks(&mut self, now: Instant) {
        for name in self.playback.advance(now) {
            if !self.cfg.echo_marks {
                continue;
            }
            let event = InboundEvent::Mark(Mark {
                sequence_number: self.next_seq(),
                stream_sid: Some(self.cfg.stream_sid.clone()),
                name: name.clone(),
            });
            self.send(Out::Text(event.to_json()));
            self.report.marks_echoed.push(name);
        }
    }

    fn violation(&mut self, now: Instant, finding: Finding) {
        let v = Violation::new(now.saturating_duration_since(self.handshake_at), finding);
        tracing::debug!(%v, "bot broke a rule");
        self.report.violations.push(v);
    }

    fn on_message(&mut self, msg: Message) -> Option<End> {
        let now = Instant::now();
        // Marks reached before this message must go out before it takes effect (a `clear`).
        self.echo_reached_marks(now);
        let checked = match &msg {
            Message::Text(t) => validate::check(BotFrame::Text(t.as_str()), &self.cfg.stream_sid),
            Message::Binary(b) => validate::check(BotFrame::Binary(b), &self.cfg.stream_sid),
            Message::Close(frame) => {
                self.record_close(frame.clone());
                self.report.closed_by_bot = true;
                return Some(End::BotClosed);
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return None,
        };
        for finding in checked.findings {
            self.violation(now, finding);
        }
        match checked.event? {
            OutboundEvent::Media { payload, .. } => {
                self.first_bot_media_at.get_or_insert(now);
                self.last_bot_media_at = Some(now);
                self.report.media_received += 1;
                self.report.media_at.push(now);
                self.report.chunk_sizes.push(payload.len());
                self.report.received_pcm.extend_from_slice(&payload);
                self.playback.push_audio(now, payload);
            }
            OutboundEvent::Mark { name, .. } => {
                self.report.marks_received.push(name.clone());
                self.playback.push_mark(now, name);
                // A mark with nothing queued is reached at once.
                self.echo_reached_marks(now);
            }
            OutboundEvent::Clear { .. } => {
                self.report.clears_received += 1;
                let heard = self.playback.heard_bytes(now);
                self.report.clears.push(ClearSeen { at: now, heard_bytes: heard });
                let cleared = self.playback.clear(now);
                tracing::debug!(?cleared, "clear");
            }
        }
        None
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A sleep that never fires in practice; keeps the select arm uniform when nothing is due.
fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rate: SampleRate) -> CallConfig {
        CallConfig { sample_rate: rate, ..CallConfig::default() }
    }

    #[test]
    fn userinfo_becomes_basic_auth_and_rate_goes_in_the_query() {
        let (url, auth) =
            prepare_ws_url("wss://KEY:T%40K@bot.example.com/media?x=1", &cfg(SampleRate::Hz16000)).unwrap();
        assert_eq!(url.as_str(), "wss://bot.example.com/media?x=1&sample-rate=16000");
        assert_eq!(auth, Some(("KEY".to_string(), "T@K".to_string())));
    }

    #[test]
    fn explicit_auth_wins_and_existing_rate_is_kept() {
        let mut c = cfg(SampleRate::Hz24000);
        c.basic_auth = Some(("u".into(), "p".into()));
        let (url, auth) = prepare_ws_url("ws://a:b@h:1/m?sample_rate=16000", &c).unwrap();
        assert_eq!(url.as_str(), "ws://h:1/m?sample_rate=16000");
        assert_eq!(auth, Some(("u".to_string(), "p".to_string())));
        // 8 kHz is the default: the applet adds nothing.
        let (url, auth) = prepare_ws_url("ws://h:1/m", &cfg(SampleRate::Hz8000)).unwrap();
        assert_eq!((url.as_str(), auth), ("ws://h:1/m", None));
        let mut c = cfg(SampleRate::Hz16000);
        c.put_rate_in_url = false;
        assert_eq!(prepare_ws_url("ws://h:1/m", &c).unwrap().0.as_str(), "ws://h:1/m");
    }

    #[test]
    fn non_ws_urls_are_rejected() {
        assert!(matches!(prepare_ws_url("http://h/", &cfg(SampleRate::Hz8000)), Err(SimError::InvalidUrl { .. })));
        assert!(matches!(prepare_ws_url("not a url", &cfg(SampleRate::Hz8000)), Err(SimError::InvalidUrl { .. })));
    }

    #[test]
    fn run_call_future_is_send() {
        // The server's tests spawn calls; a !Send future would only show up there.
        fn is_send<T: Send>(_: &T) {}
        is_send(&run_call(CallConfig::default()));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Ab%40c%2"), "a:b@c%2");
        assert_eq!(percent_decode("%E0%A4%B9"), "ह");
    }

    #[test]
    fn plan_interleaves_media_dtmf_and_injections_in_time_order() {
        let mut c = cfg(SampleRate::Hz8000);
        c.frame_ms = 100;
        c.dtmf = vec![(Duration::from_millis(150), "5".into()), (Duration::from_millis(0), "#".into())];
        c.inject = vec![(Duration::from_millis(100), Injected::Text("x".into()))];
        // 250 ms of audio: frames at 0, 100, 200, the last one half size.
        let plan = schedule(&c, 250 * 16);
        let shape: Vec<(u64, String)> = plan
            .iter()
            .map(|(at, s)| {
                let what = match s {
                    Scheduled::Media { index, from, to } => format!("m{index}:{from}-{to}"),
                    Scheduled::Dtmf(d) => format!("d{d}"),
                    Scheduled::Inject(_) => "i".into(),
                };
                (at.as_millis() as u64, what)
            })
            .collect();
        let want: Vec<(u64, String)> =
            [(0, "m0:0-1600"), (0, "d#"), (100, "m1:1600-3200"), (100, "i"), (150, "d5"), (200, "m2:3200-4000")]
                .into_iter()
                .map(|(t, s)| (t, s.to_string()))
                .collect();
        assert_eq!(shape, want);
    }
}
