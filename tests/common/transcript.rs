//! The one expect / send / sync loop of the test kit.
//!
//! Every harness — a `livewire` process ([`super::ChatProc`], [`super::ServerProc`]) or an
//! in-process client (`faulty_net`'s `Lib`) — turns what it prints into JSON values on a
//! channel and takes commands as JSON values. A [`Transcript`] records the values, waits for
//! the ones a test expects (with a deadline that only fires when something is broken) and
//! writes commands, so the waiting rules live here once.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::WAIT;

/// Where a transcript's commands go (a process's stdin, an in-process client's handle).
pub type CommandSink = Box<dyn FnMut(&str) + Send>;

/// Everything one harness printed, a cursor for [`Transcript::expect`], and its input.
pub struct Transcript {
    /// Who this is, for failure messages.
    pub who: String,
    /// Every event so far, oldest first.
    pub log: Vec<Value>,
    /// How many events of `log` `expect` has looked at.
    seen: usize,
    events: Receiver<Value>,
    input: Option<CommandSink>,
}

/// Reads JSON lines from `stream` on a thread and sends each as a value; a line that is not
/// JSON arrives as `{"event":"_unparsed","line":…}`. The channel closes at end of stream.
pub fn json_lines(stream: impl Read + Send + 'static) -> Receiver<Value> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let v = serde_json::from_str(&line)
                .unwrap_or_else(|_| json!({"event": "_unparsed", "line": line}));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    rx
}

/// A channel for harnesses that produce events themselves (in-process clients).
pub fn event_channel() -> (Sender<Value>, Receiver<Value>) {
    channel()
}

impl Transcript {
    /// A transcript of `events`; `input` is `None` for harnesses that take no commands.
    pub fn new(who: &str, events: Receiver<Value>, input: Option<CommandSink>) -> Self {
        Self {
            who: who.to_owned(),
            log: Vec::new(),
            seen: 0,
            events,
            input,
        }
    }

    /// Takes the next event into the log, or panics at `deadline` or when the source ended.
    fn pull(&mut self, deadline: Instant, what: &str) -> &Value {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(left) {
            Ok(v) => {
                self.log.push(v);
                self.log.last().expect("just pushed")
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("{}: no {what} in time; log: {:#?}", self.who, self.log)
            }
            Err(RecvTimeoutError::Disconnected) => panic!(
                "{}: ended while waiting for {what}; log: {:#?}",
                self.who, self.log
            ),
        }
    }

    /// Waits for the next event (after those already returned by `expect`) matching `pred`.
    pub fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.expect_within(what, WAIT, pred)
    }

    /// [`Transcript::expect`] with its own time limit, for waits whose legitimate worst case
    /// is longer than [`WAIT`] (noticing a dead path takes the idle timeout).
    pub fn expect_within(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            while self.seen < self.log.len() {
                self.seen += 1;
                if pred(&self.log[self.seen - 1]) {
                    return self.log[self.seen - 1].clone();
                }
            }
            self.pull(deadline, what);
        }
    }

    /// Waits until `pred` holds for everything recorded from index `from` on; the cursor of
    /// `expect` is left alone.
    pub fn wait_for(
        &mut self,
        from: usize,
        limit: Duration,
        what: &str,
        pred: impl Fn(&[Value]) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        while !pred(&self.log[from.min(self.log.len())..]) {
            self.pull(deadline, what);
        }
    }

    /// The first event, recorded or to come, matching `pred`; the cursor is left alone.
    pub fn find_any(
        &mut self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_for(0, limit, what, |l| l.iter().any(&pred));
        self.log
            .iter()
            .find(|v| pred(v))
            .cloned()
            .expect("just seen")
    }

    /// Writes one raw command line.
    pub fn raw(&mut self, line: &str) {
        let who = &self.who;
        let input = self
            .input
            .as_mut()
            .unwrap_or_else(|| panic!("{who}: input closed"));
        input(line);
    }

    /// Writes one JSON command.
    pub fn cmd(&mut self, v: Value) {
        self.raw(&v.to_string());
    }

    /// `send {to, text}`.
    pub fn send(&mut self, to: &str, text: &str) {
        self.cmd(json!({"cmd": "send", "to": to, "text": text}));
    }

    /// The `sync` barrier: returns every event printed after those `expect` has looked at
    /// and before the answer.
    pub fn sync(&mut self) -> Vec<Value> {
        self.sync_within(WAIT)
    }

    /// [`Transcript::sync`] with its own time limit (a lossy path retransmits for a while).
    pub fn sync_within(&mut self, limit: Duration) -> Vec<Value> {
        let start = self.seen;
        self.cmd(json!({"cmd": "sync"}));
        self.expect_within("sync", limit, |v| v["event"] == "sync");
        self.log[start..self.seen - 1].to_vec()
    }

    /// Closes the input (a scripted client then flushes its outbox and logs out).
    pub fn close_input(&mut self) {
        self.input = None;
    }

    /// Records everything until the source ends; panics after `limit`.
    pub fn read_to_end(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => self.log.push(v),
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{}: did not end within {limit:?}; log: {:#?}",
                        self.who, self.log
                    )
                }
            }
        }
    }

    /// Records what arrives until `quiet` passes without an event (after a process exited,
    /// the reader thread may still hold its last lines).
    pub fn drain(&mut self, quiet: Duration) {
        while let Ok(v) = self.events.recv_timeout(quiet) {
            self.log.push(v);
        }
    }

    /// How many events of `kind` were recorded.
    pub fn count(&self, kind: &str) -> usize {
        self.log.iter().filter(|v| v["event"] == kind).count()
    }

    /// Every `message` event recorded.
    pub fn messages(&self) -> Vec<&Value> {
        super::events(&self.log, "message")
    }
}
