//! The `realize` command line (DESIGN.md "What a user does").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nix::sys::signal::{SigSet, Signal};

use realize::data::{self, DataDir};
use realize::fs::Fs;
use realize::fuse::Fuse;
use realize::net::endpoint::Network;

#[derive(Parser)]
#[command(
    name = "realize",
    version,
    about = "A peer-to-peer file system for a household of machines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the data directory (key pair and database) and print the peer id.
    Init {
        /// The data directory [default: $XDG_DATA_HOME/realize or ~/.local/share/realize].
        #[arg(long)]
        data: Option<PathBuf>,
        /// This peer's name as others see it [default: the host name].
        #[arg(long)]
        name: Option<String>,
    },
    /// Mount the tree at MOUNTPOINT and serve it in the foreground until
    /// ^C, SIGTERM or umount.
    Mount {
        /// An empty directory, not already a mount point.
        mountpoint: PathBuf,
        /// The data directory, initialised when absent.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Serve reads and writes of real files in userspace even when the
        /// kernel offers FUSE passthrough.
        #[arg(long)]
        no_passthrough: bool,
        /// Where to listen for peers (UDP), or `none` for a deaf peer that
        /// only dials out.
        #[arg(long, default_value = "0.0.0.0:7717")]
        listen: String,
        /// Let other local users in (the kernel checks permissions);
        /// a user other than root needs user_allow_other in /etc/fuse.conf.
        #[arg(long)]
        allow_other: bool,
    },
}

fn data_dir(data: Option<PathBuf>) -> Result<PathBuf, String> {
    data.map_or_else(|| data::default_path().map_err(|e| e.to_string()), Ok)
}

/// Checks that `path` is an existing, empty directory that is not a mount
/// point already.
fn check_mountpoint(path: &Path) -> Result<PathBuf, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("mount point {shown}: {e}"))?;
    if !meta.is_dir() {
        return Err(format!("mount point {shown} is not a directory"));
    }
    let canonical = path
        .canonicalize()
        .map_err(|e| format!("mount point {shown}: {e}"))?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let target = canonical.to_string_lossy().replace(' ', "\\040");
    if mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(target.as_str()))
    {
        return Err(format!("mount point {shown} is already mounted"));
    }
    let mut entries = std::fs::read_dir(path).map_err(|e| format!("mount point {shown}: {e}"))?;
    if entries.next().is_some() {
        return Err(format!("mount point {shown} is not empty"));
    }
    Ok(canonical)
}

fn init(data: Option<PathBuf>, name: Option<String>) -> Result<(), String> {
    let root = data_dir(data)?;
    let dir = DataDir::open(&root, name.as_deref()).map_err(|e| e.to_string())?;
    println!("{}", dir.peer_id());
    Ok(())
}

fn mount(
    mountpoint: PathBuf,
    data: Option<PathBuf>,
    no_passthrough: bool,
    listen: &str,
    allow_other: bool,
) -> Result<(), String> {
    let listen: Option<SocketAddr> = match listen {
        "none" => None,
        addr => Some(
            addr.parse()
                .map_err(|_| format!("bad --listen {addr:?}: expected IP:PORT or none"))?,
        ),
    };
    let mountpoint = check_mountpoint(&mountpoint)?;
    let root = data_dir(data)?;
    let dir = DataDir::open(&root, None).map_err(|e| e.to_string())?;
    let real = dir.real();
    let (_, identity, store, _lock) = dir.into_parts();
    let peer_id = identity.peer_id();

    // Signals go to one thread that unmounts; block them everywhere else
    // before any thread starts.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;

    let fs =
        Fs::new(store, real, peer_id).map_err(|e| format!("reading {}: {e}", root.display()))?;
    let network = Network::start(
        fs.tree().clone() as std::sync::Arc<dyn realize::net::core::Core>,
        &identity,
        listen,
    )
    .map_err(|e| format!("starting the network: {e}"))?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("realize".into()),
        fuser::MountOption::Subtype("realize".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    if allow_other {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(4);
    config.clone_fd = true;
    let mut session =
        fuser::Session::new(Fuse::new(fs.clone(), !no_passthrough), &mountpoint, &config)
            .map_err(|e| format!("mounting {}: {e}", mountpoint.display()))?;
    fs.set_kernel_cache(Box::new(session.notifier()));
    let mut unmounter = session.unmount_callable();
    let target = mountpoint.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(signal) = signals.wait() {
                tracing::info!("{signal:?}: unmounting");
                if let Err(e) = unmounter.unmount() {
                    tracing::warn!("unmount: {e}; detaching lazily");
                    let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
                }
            }
        })
        .map_err(|e| format!("starting the signal thread: {e}"))?;
    let recorder = fs
        .start()
        .map_err(|e| format!("starting the recorder: {e}"))?;
    let listening = network
        .local_addr()
        .map_or("nowhere (deaf)".to_string(), |a| a.to_string());
    eprintln!(
        "realize: {} mounted at {} as {peer_id}, listening on {listening}",
        root.display(),
        mountpoint.display()
    );
    // fuser calls `destroy` (which records what rests and flushes LMDB)
    // when the session ends, however it ends.
    let result = session.run();
    let _ = recorder.join();
    network.shutdown();
    result.map_err(|e| format!("serving {}: {e}", mountpoint.display()))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log redirected to a file stays
        // plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match Cli::parse().command {
        Command::Init { data, name } => init(data, name),
        Command::Mount {
            mountpoint,
            data,
            no_passthrough,
            listen,
            allow_other,
        } => mount(mountpoint, data, no_passthrough, &listen, allow_other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("realize: {e}");
            ExitCode::FAILURE
        }
    }
}
