//! `zdtm-test list --json | run NAME --pidfile=F --outfile=F ... | features`

use anyhow::{bail, Context, Result};
use zdtm::{features, tests, Opts};

fn usage() -> &'static str {
    "usage: zdtm-test list [--json]\n       zdtm-test run NAME --pidfile=F --outfile=F [--filename=F] [--dirname=D] [--opt=val...]\n       zdtm-test features [--json]"
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("list") => {
            let cat = tests::all();
            if args.get(1).map(String::as_str) == Some("--json") {
                let descs: Vec<_> = cat.iter().map(|e| e.desc).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&descs).context("serialize the catalogue")?
                );
            } else {
                for e in &cat {
                    println!("{:<28} {}", e.desc.name, e.desc.description);
                }
            }
            Ok(())
        }
        Some("features") => {
            let mut m = serde_json::Map::new();
            for (name, p) in features::probe_all() {
                m.insert(
                    name.to_string(),
                    serde_json::to_value(&p).context("serialize a probe")?,
                );
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&m).context("serialize features")?
            );
            Ok(())
        }
        Some("run") => {
            let Some(name) = args.get(1) else {
                bail!("run: which test?\n{}", usage())
            };
            let Some(entry) = tests::find(name) else {
                bail!("no test named {name:?} (see `zdtm-test list`)")
            };
            let opts = Opts::parse(&args[2..]).with_context(|| format!("options of {name}"))?;
            std::process::exit(zdtm::run(opts, entry.body));
        }
        _ => bail!("{}", usage()),
    }
}
