//! The stdio transport: `custos run -- CMD ARGS…`.
//!
//! The client speaks MCP on our stdin/stdout; the upstream is CMD, a child process speaking MCP on
//! its stdin/stdout. Its stderr comes out on ours, line by line, through the leak guard (an
//! upstream that prints its environment must not put its injected key in our log). Its
//! environment is ours without the variables that are secret sources, plus the secrets injected
//! into it. Two pumps carry frames, one per direction; each keeps the
//! order of its frames even while earlier ones wait for the audit log, by running the pipeline
//! for up to `max_in_flight` frames at once and emitting results strictly in arrival order.
//!
//! Shutdown:
//! - the client closes our stdin → the child's stdin is closed, it gets `shutdown_grace_ms` to
//!   exit, then it is killed; the run ends normally;
//! - the child exits first → every unanswered request gets an error, the exit is recorded, and
//!   we exit non-zero saying so;
//! - SIGINT or SIGTERM → as if the client had closed, then the log is flushed.

use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use custos_mcp::FrameReader;

use crate::pipeline::{Gateway, Outcome};

/// How a stdio session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdioExit {
    /// The client closed its side; the child exited (or was stopped) after that.
    ClientClosed { upstream: String },
    /// The child exited while the client was still connected.
    UpstreamExited { status: String },
    /// A signal asked us to stop.
    Signal(&'static str),
}

/// Errors that stop the transport before it serves.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("cannot start upstream `{program}`: {reason}")]
    Spawn { program: String, reason: String },
    #[error("an upstream command is required: custos run [OPTIONS] -- CMD [ARGS…]")]
    NoCommand,
    #[error("cannot record the start of the run: {0}")]
    Audit(#[from] custos_store::StoreError),
}

type Pump = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Runs one stdio session until the client or the upstream ends it.
pub async fn serve_stdio<R, W>(
    gateway: Arc<Gateway>,
    command: &[String],
    client_in: R,
    client_out: W,
    limits: custos_config::Limits,
) -> Result<StdioExit, StdioError>
where
    R: AsyncBufRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (to_client, client_writer) = writer(client_out);
    let mut upstream = ChildUpstream::start(&gateway, command, limits, to_client.clone()).await?;
    let to_child = upstream.input().clone();

    let mut client_pump = Some(tokio::spawn(pump(
        FrameReader::new(client_in, limits.max_message_bytes),
        limits.max_in_flight,
        gateway.clone(),
        Direction::FromClient,
        to_child.clone(),
        to_client.clone(),
    )));

    let grace = Duration::from_millis(limits.shutdown_grace_ms);
    let exit = tokio::select! {
        _ = join(&mut client_pump) => {
            // Everything the client sent has been forwarded; now close the child's stdin and
            // give it time to exit, passing on whatever it still says.
            let status = upstream.close_and_wait(grace).await;
            StdioExit::ClientClosed { upstream: status }
        }
        _ = upstream.exited() => {
            let status = upstream.wait_status(grace).await;
            for answer in gateway.upstream_gone(&status).await {
                let _ = to_client.send(answer).await;
            }
            StdioExit::UpstreamExited { status }
        }
        signal = shutdown_signal() => {
            let _ = upstream.close_and_wait(grace).await;
            StdioExit::Signal(signal)
        }
    };
    // Stop both pumps, so that every sender to the writers is gone and they can finish.
    if let Some(pump) = client_pump.take() {
        pump.abort();
        let _ = pump.await;
    }
    upstream.stop().await;
    drop(to_client);
    drop(to_child);
    let reason = match &exit {
        StdioExit::ClientClosed { .. } => "client closed".to_owned(),
        StdioExit::UpstreamExited { status } => format!("upstream exited ({status})"),
        StdioExit::Signal(s) => format!("signal {s}"),
    };
    gateway.end(&reason).await;
    // Let the client writer drain what is already queued.
    let _ = client_writer.await;
    Ok(exit)
}

/// Longest stderr line relayed whole; longer ones are cut (and still pass the guard).
const MAX_STDERR_LINE: usize = 64 * 1024;

/// Copies the child's stderr to ours a line at a time, each through the leak guard; a
/// credential found is redacted and recorded as a finding.
async fn relay_stderr(stderr: tokio::process::ChildStderr, gateway: Arc<Gateway>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut reader = BufReader::new(stderr);
    let mut out = tokio::io::stderr();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader).take(MAX_STDERR_LINE as u64).read_until(b'\n', &mut line).await;
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = match gateway.broker().guard().redact_text(&text) {
            Some((clean, hits)) => {
                let findings = gateway.leak_findings(&hits, 0, "stderr");
                gateway.record_findings(findings).await;
                std::borrow::Cow::Owned(clean)
            }
            None => text,
        };
        let _ = out.write_all(text.as_bytes()).await;
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n").await;
        }
    }
}

/// A stdio MCP server as a child process behind a [`Gateway`]: frames sent to [`Self::input`]
/// go to its stdin; everything it writes passes [`Gateway::from_upstream`] and comes out on the
/// `onward` channel given to [`Self::start`]. Its stderr is ours.
#[derive(Debug)]
pub struct ChildUpstream {
    child: Child,
    input: mpsc::Sender<Vec<u8>>,
    writer: tokio::task::JoinHandle<()>,
    pump: Option<tokio::task::JoinHandle<()>>,
}

impl ChildUpstream {
    /// Starts `command`, records the start of the gateway's run, and starts pumping its output.
    pub async fn start(
        gateway: &Arc<Gateway>,
        command: &[String],
        limits: custos_config::Limits,
        onward: mpsc::Sender<Vec<u8>>,
    ) -> Result<Self, StdioError> {
        Self::launch(gateway, command, limits, onward, None).await
    }

    /// Starts `command` again for a run whose upstream died (`attempt` counts from 1): records
    /// `upstream.restarted` instead of a new start of the run.
    pub async fn restart(
        gateway: &Arc<Gateway>,
        command: &[String],
        limits: custos_config::Limits,
        onward: mpsc::Sender<Vec<u8>>,
        attempt: u32,
    ) -> Result<Self, StdioError> {
        Self::launch(gateway, command, limits, onward, Some(attempt)).await
    }

    async fn launch(
        gateway: &Arc<Gateway>,
        command: &[String],
        limits: custos_config::Limits,
        onward: mpsc::Sender<Vec<u8>>,
        restart: Option<u32>,
    ) -> Result<Self, StdioError> {
        let (program, args) = command.split_first().ok_or(StdioError::NoCommand)?;
        let broker = gateway.broker();
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        for var in broker.env_removed() {
            command.env_remove(var);
        }
        command.envs(broker.child_env(gateway.server()));
        let mut child =
            command.spawn().map_err(|e| StdioError::Spawn { program: program.clone(), reason: e.to_string() })?;
        let (Some(child_in), Some(child_out), Some(child_err)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(StdioError::Spawn { program: program.clone(), reason: "no pipes to the child".into() });
        };
        tokio::spawn(relay_stderr(child_err, gateway.clone()));
        let program_name = std::path::Path::new(program)
            .file_name()
            .map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned());
        // Arguments can carry secrets (tokens on command lines); record their count, not their text.
        let detail =
            serde_json::json!({ "program": program_name, "argc": args.len(), "pid": child.id(), "transport": "stdio" });
        match restart {
            None => gateway.start(detail).await?,
            Some(attempt) => gateway.restarted(attempt, detail).await?,
        }
        let (input, writer) = writer(child_in);
        let pump = tokio::spawn(pump(
            FrameReader::new(BufReader::new(child_out), limits.max_message_bytes),
            limits.max_in_flight,
            gateway.clone(),
            Direction::FromUpstream,
            onward,
            input.clone(),
        ));
        Ok(Self { child, input, writer, pump: Some(pump) })
    }

    /// Where frames for the child go.
    pub fn input(&self) -> &mpsc::Sender<Vec<u8>> {
        &self.input
    }

    /// Resolves when the child's output has ended (it exited or closed stdout).
    pub async fn exited(&mut self) {
        join(&mut self.pump).await;
    }

    /// Closes the child's stdin after what is queued, waits up to `grace` for it to exit (then
    /// kills it), and lets the pump pass on what it still wrote.
    pub async fn close_and_wait(&mut self, grace: Duration) -> String {
        close(&self.input).await;
        let status = wait_status(&mut self.child, grace).await;
        let _ = tokio::time::timeout(grace, join(&mut self.pump)).await;
        status
    }

    /// How the child ended, waiting up to `grace` before killing it.
    pub async fn wait_status(&mut self, grace: Duration) -> String {
        wait_status(&mut self.child, grace).await
    }

    /// Stops the pump and the writer, and kills the child if it is still running.
    pub async fn stop(&mut self) {
        if let Some(pump) = self.pump.take() {
            pump.abort();
            let _ = pump.await;
        }
        self.writer.abort();
        let _ = self.child.start_kill();
    }
}

/// Waits for a pump task, once: afterwards the slot is empty so it is never polled again.
async fn join(slot: &mut Option<tokio::task::JoinHandle<()>>) {
    match slot.as_mut() {
        Some(handle) => {
            let _ = handle.await;
            *slot = None;
        }
        None => std::future::pending().await,
    }
}

/// Asks a writer to close its output after what is already queued.
async fn close(tx: &mpsc::Sender<Vec<u8>>) {
    // INVARIANT: frames are never empty (the reader skips blank lines and answers are JSON), so
    // an empty frame can mean "close".
    let _ = tx.send(Vec::new()).await;
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    FromClient,
    FromUpstream,
}

/// Reads frames, runs them through the pipeline with bounded concurrency, and sends the outcomes
/// in arrival order: forwards to `onward`, answers to `back`.
async fn pump<R: AsyncBufRead + Unpin>(
    mut reader: FrameReader<R>,
    max_in_flight: usize,
    gateway: Arc<Gateway>,
    direction: Direction,
    onward: mpsc::Sender<Vec<u8>>,
    back: mpsc::Sender<Vec<u8>>,
) {
    let mut in_flight: FuturesOrdered<Pump> = FuturesOrdered::new();
    let mut reading = true;
    loop {
        tokio::select! {
            // INVARIANT: outcomes leave in the order their frames arrived; FuturesOrdered yields
            // in push order no matter which future finishes first.
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                let sent = match outcome {
                    Outcome::Forward(bytes) => onward.send(bytes).await,
                    Outcome::Answer(bytes) => back.send(bytes).await,
                    Outcome::Drop => Ok(()),
                    // A held call waits on its own, so the frames after it are not held up.
                    Outcome::Held(held) => {
                        let (gw, onward, back) = (gateway.clone(), onward.clone(), back.clone());
                        tokio::spawn(async move {
                            let _ = match gw.settle(*held, back.clone()).await {
                                Outcome::Forward(bytes) => onward.send(bytes).await,
                                Outcome::Answer(bytes) => back.send(bytes).await,
                                Outcome::Drop | Outcome::Held(_) => Ok(()),
                            };
                        });
                        Ok(())
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
            frame = reader.next_frame(), if reading && in_flight.len() < max_in_flight => {
                match frame {
                    Ok(Some(frame)) => {
                        let gw = gateway.clone();
                        in_flight.push_back(Box::pin(async move {
                            match direction {
                                Direction::FromClient => gw.from_client(frame).await,
                                Direction::FromUpstream => gw.from_upstream(frame).await,
                            }
                        }));
                    }
                    Ok(None) => reading = false,
                    Err(err) => {
                        tracing::warn!("read error: {err}");
                        reading = false;
                    }
                }
            }
            else => return,
        }
    }
}

/// A task that writes each frame as one line, flushing once the queue is empty; returns its
/// sender.
/// How many bytes of queued frames the writer gathers into one write at most.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

fn writer<W: AsyncWrite + Unpin + Send + 'static>(mut out: W) -> (mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    let task = tokio::spawn(async move {
        // Frames already queued go out in one write: under load, one syscall carries many.
        let mut batch = Vec::new();
        'frames: while let Some(frame) = rx.recv().await {
            let mut next = Some(frame);
            while let Some(frame) = next.take() {
                if frame.is_empty() {
                    if !batch.is_empty() {
                        let _ = out.write_all(&batch).await;
                    }
                    break 'frames;
                }
                batch.extend_from_slice(&frame);
                batch.push(b'\n');
                if batch.len() < WRITE_BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            if out.write_all(&batch).await.is_err() || out.flush().await.is_err() {
                return;
            }
            batch.clear();
        }
        let _ = out.shutdown().await;
    });
    (tx, task)
}

/// Waits up to `grace` for the child to exit, then kills it; describes how it ended.
async fn wait_status(child: &mut Child, grace: Duration) -> String {
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => describe(status),
        Ok(Err(err)) => format!("unknown status: {err}"),
        Err(_) => {
            let _ = child.kill().await;
            match child.wait().await {
                Ok(status) => format!("killed after {} ms grace ({})", grace.as_millis(), describe(status)),
                Err(err) => format!("killed; status unknown: {err}"),
            }
        }
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => status.to_string(),
    }
}

/// Resolves on SIGINT or SIGTERM with the signal's name.
pub fn shutdown_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed now, not when first polled: a caller that says it is ready after this call
    // cannot be killed by a SIGTERM that arrives before its task first runs.
    let handlers = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
    async move {
        let (Ok(mut int), Ok(mut term)) = handlers else {
            // Without signal handlers we simply never stop on a signal here; the default action
            // (terminate) still applies to the process.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
}
