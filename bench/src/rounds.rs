//! The rounds that run the scenarios.
//!
//! A *round* runs every selected scenario once against every target.
//! Within a round the targets take turns (their order rotates from round to
//! round), so every ratio the report prints compares runs made minutes
//! apart on the same machine, and a slow drift of the machine (a neighbour
//! compiling, thermal throttling) spreads over all targets alike. Several
//! rounds give a median and a spread.
//!
//! Each turn starts the server afresh, runs every point of the scenario
//! against it, and stops it: no scenario inherits another's connections,
//! caches or leaks.

use std::io;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use crate::machine::Pinning;
use crate::report::{RunRecord, Status};
use crate::scenarios::{self, Figures, GenSettings, Point, Profile, Scenario};
use crate::targets::{self, Launch, StartOptions, Target};

/// Everything the rounds need.
#[derive(Debug, Clone)]
pub struct Rounds<'a> {
    /// How many rounds, and each scenario's points.
    pub profile: &'a Profile,
    /// The scenarios, in report order.
    pub scenarios: &'a [&'static Scenario],
    /// The servers.
    pub targets: &'a [Target],
    /// The document root every server serves (absolute).
    pub site: &'a Path,
    /// Where the servers' logs go (absolute).
    pub logs: &'a Path,
    /// Which CPUs the servers and the load generator get, if pinned.
    pub pinning: Option<&'a Pinning>,
    /// The load generator's threads, warm-up and window.
    pub load: GenSettings,
}

/// What one run came to (the figures boxed: they are large, the other
/// outcomes a line of text).
enum Outcome {
    Measured(Box<Figures>),
    NotApplicable(String),
    Failed(String),
}

impl Rounds<'_> {
    /// Runs every round and returns every run, in the order they ran.
    pub fn run(&self) -> io::Result<Vec<RunRecord>> {
        let bar = progress_bar(self.total_runs())?;
        let mut runs = Vec::new();
        for round in 0..self.profile.rounds {
            for &scenario in self.scenarios {
                let mut points = scenarios::points(scenario, self.profile);
                if let Some(cal) = scenarios::calibration(scenario, self.profile) {
                    points = self.calibrate(round, scenario, &cal, &points, &bar, &mut runs);
                }
                for target in self.turns(scenario, round) {
                    let mut turn = Turn {
                        round,
                        scenario,
                        target,
                        bar: &bar,
                        runs: &mut runs,
                    };
                    self.take_turn(&mut turn, &points);
                }
            }
        }
        bar.finish_and_clear();
        Ok(runs)
    }

    /// Measures the closed-loop maximum of the scenario's calibration
    /// target (nginx, else the first) in this round, records it as that
    /// target's `cal` point, and returns `points` with their rates made
    /// absolute. If it cannot be measured the rates stay at zero, which
    /// [`scenarios::measure`] refuses: every point of the round fails.
    fn calibrate(
        &self,
        round: usize,
        scenario: &'static Scenario,
        cal: &Point,
        points: &[Point],
        bar: &ProgressBar,
        runs: &mut Vec<RunRecord>,
    ) -> Vec<Point> {
        let turns = self.turns(scenario, 0);
        let Some(target) = scenarios::calibration_target(&turns) else {
            return points.to_vec();
        };
        let mut turn = Turn {
            round,
            scenario,
            target,
            bar,
            runs,
        };
        self.take_turn(&mut turn, std::slice::from_ref(cal));
        let max = runs
            .last()
            .and_then(|r| r.figures.as_ref())
            .map(|f| f.rps)
            .filter(|&rps| rps > 0.0);
        match max {
            Some(max) => points.iter().map(|p| p.at_rate(max)).collect(),
            None => points.to_vec(),
        }
    }

    /// Every run of every round, for the progress bar.
    fn total_runs(&self) -> usize {
        let per_round: usize = self
            .scenarios
            .iter()
            .map(|sc| {
                let cal = usize::from(scenarios::calibration(sc, self.profile).is_some());
                scenarios::points(sc, self.profile).len() * self.turns(sc, 0).len() + cal
            })
            .sum();
        per_round * self.profile.rounds
    }

    /// The targets `scenario` concerns, in the order they take their turns
    /// in `round`: the list rotated by one place a round.
    fn turns(&self, scenario: &Scenario, round: usize) -> Vec<&Target> {
        let mut order: Vec<&Target> = self
            .targets
            .iter()
            .filter(|t| scenarios::relevant(scenario, t))
            .collect();
        if !order.is_empty() {
            let k = round % order.len();
            order.rotate_left(k);
        }
        order
    }

    /// One target's turn at one scenario: start it, run every point, stop
    /// it. A target that cannot take any point by design is not started.
    fn take_turn(&self, turn: &mut Turn<'_>, points: &[Point]) {
        let target = turn.target;
        if points
            .iter()
            .all(|p| scenarios::not_applicable(p, target).is_some())
        {
            for p in points {
                let why = scenarios::not_applicable(p, target).unwrap_or_default();
                turn.record(p, Outcome::NotApplicable(why));
            }
            return;
        }
        // The proxy scenario's upstream: stage 4 with one loop, started
        // for this turn and stopped after it, the same for every proxy.
        let upstream = if turn.scenario.name == "proxy" {
            match self.start_upstream() {
                Ok(up) => Some(up),
                Err(e) => {
                    for p in points {
                        turn.record(p, Outcome::Failed(format!("the upstream: {e}")));
                    }
                    return;
                }
            }
        } else {
            None
        };
        let extra = scenarios::stage_args(turn.scenario);
        let opts = StartOptions {
            proxy_to: upstream.as_ref().map(|u| u.addr),
            // Only our stages take the scenario's flags.
            extra_args: if matches!(target.launch, Launch::Contract { .. }) {
                &extra
            } else {
                &[]
            },
            ..StartOptions::new(self.site, self.logs, self.pinning)
        };
        let mut server = match targets::start(target, &opts) {
            Ok(server) => server,
            Err(e) => {
                for p in points {
                    turn.record(p, Outcome::Failed(format!("start: {e}")));
                }
                return;
            }
        };
        for p in points {
            turn.bar.set_message(format!(
                "round {} · {} · {} · {}",
                turn.round + 1,
                turn.scenario.name,
                p.label,
                target.name
            ));
            let outcome = if let Some(why) = scenarios::not_applicable(p, target) {
                Outcome::NotApplicable(why)
            } else if !server.alive() {
                Outcome::Failed("the server exited".into())
            } else {
                match scenarios::measure(server.addr, server.pid(), p, &self.load) {
                    Ok(f) => Outcome::Measured(Box::new(f)),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            };
            turn.record(p, outcome);
        }
        if !server.stop() {
            turn.bar.println(format!(
                "{}: did not stop within 5 s of SIGTERM; killed",
                target.name
            ));
        }
        if let Some(up) = upstream {
            up.stop();
        }
    }

    /// Starts the proxy scenario's upstream: the stage 4 binary of the
    /// lineup, with one event loop.
    fn start_upstream(&self) -> io::Result<targets::Running> {
        let bin = self
            .targets
            .iter()
            .find_map(|t| match (&t.launch, t.stage) {
                (Launch::Contract { bin, .. }, Some("stage4-epoll")) => Some(bin.clone()),
                _ => None,
            })
            .ok_or_else(|| {
                io::Error::other("stage 4 is not in the lineup (--stage stage4-epoll)")
            })?;
        let upstream = Target {
            name: "proxy-upstream".into(),
            about: "the proxy scenario's upstream".into(),
            stage: Some("stage4-epoll"),
            launch: Launch::Contract {
                bin,
                args: vec!["--loops".into(), "1".into()],
            },
        };
        targets::start(
            &upstream,
            &StartOptions::new(self.site, self.logs, self.pinning),
        )
    }
}

/// One target's turn at one scenario in one round, and where its runs go.
struct Turn<'a> {
    round: usize,
    scenario: &'static Scenario,
    target: &'a Target,
    bar: &'a ProgressBar,
    runs: &'a mut Vec<RunRecord>,
}

impl Turn<'_> {
    /// Records the run of `point` and moves the progress bar on.
    fn record(&mut self, point: &Point, outcome: Outcome) {
        let (status, note, figures) = match outcome {
            Outcome::Measured(f) => (Status::Measured, String::new(), Some(*f)),
            Outcome::NotApplicable(why) => (Status::NotApplicable, why, None),
            Outcome::Failed(why) => (Status::Failed, why, None),
        };
        self.runs.push(RunRecord {
            round: self.round,
            scenario: self.scenario.name.to_string(),
            point: point.label.clone(),
            x: point.x,
            target: self.target.name.clone(),
            status,
            note,
            figures,
        });
        self.bar.inc(1);
    }
}

/// A progress bar for `total` runs, on stderr.
fn progress_bar(total: usize) -> io::Result<ProgressBar> {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .map_err(io::Error::other)?
            .progress_chars("=> "),
    );
    Ok(bar)
}
