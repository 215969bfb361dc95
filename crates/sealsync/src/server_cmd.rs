//! `sealsync server ...` and `sealsync admin ...`: thin wrappers over `sealsync-server`.

use anyhow::Context as _;

use crate::cli::{AdminArgs, AdminCommand, ServerCommand};

pub(crate) fn server(cmd: ServerCommand) -> anyhow::Result<()> {
    match cmd {
        ServerCommand::Init { data, url } => {
            sealsync_server::init(&data, &url)
                .with_context(|| format!("cannot initialise server in {}", data.display()))?;
            let listen = sealsync_server::default_listen(&data)
                .with_context(|| format!("cannot read the server in {}", data.display()))?;
            println!("initialised server in {} for {url}", data.display());
            println!(
                "next: sealsync server run --data {}   (listens on {listen} and stays in the \
                 foreground: use another terminal, or add &)",
                data.display()
            );
            Ok(())
        }
        ServerCommand::Run { data, listen } => {
            init_logging();
            let listen = match listen {
                Some(l) => l,
                None => sealsync_server::default_listen(&data)
                    .with_context(|| format!("cannot start server from {}", data.display()))?,
            };
            let rt = crate::runtime()?;
            rt.block_on(async move {
                let server = sealsync_server::Server::bind(&data, listen)
                    .await
                    .with_context(|| format!("cannot start server on {listen}"))?;
                println!("listening on https://{}", server.local_addr());
                server
                    .run(async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await
                    .context("server stopped with an error")
            })
        }
    }
}

pub(crate) fn admin(args: AdminArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::Enroll { account, ttl, url } => {
            let ttl = sealsync_server::parse_duration(&ttl).context("bad --ttl")?;
            let bundle = sealsync_server::enroll_ticket(&args.data, &account, ttl, url.as_deref())
                .with_context(|| format!("cannot issue a ticket from {}", args.data.display()))?;
            println!("{bundle}");
            Ok(())
        }
    }
}

/// Structured server logs on stderr; `RUST_LOG` adjusts the level (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
