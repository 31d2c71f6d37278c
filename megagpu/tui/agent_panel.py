"""The learning agent: phase, counters, reward trend and the newest decisions."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Sparkline, Static

from megagpu.tui import cells
from megagpu.tui.panel import Panel
from megagpu.tui.rows import Snapshot
from megagpu.tui.synced_table import SyncedTable

NAME_WIDTH = 28
PHASE_STYLES = {"Exploring": "magenta", "Exploiting": "cyan", "Converged": "green"}
COLUMNS = (
    ("workload", "WORKLOAD"),
    ("backend", "BACKEND"),
    ("node", "NODE"),
    ("mode", "MODE"),
    ("predicted", "PRED"),
    ("actual", "ACTUAL"),
    ("reward", "REWARD"),
)


class AgentPanel(Panel):
    """What the Q-policy is doing and how well its placements turn out."""

    PANEL = "policy"
    TITLE = "Agent"

    def compose_body(self) -> ComposeResult:
        """The panel's widgets."""
        yield Static("no policy status yet", id="agent-summary")
        yield Sparkline([], id="reward-trend")
        yield SyncedTable(COLUMNS, sort="workload", id="decisions")

    def show(self, snapshot: Snapshot, filter_text: str) -> None:
        """Draw the snapshot's rows that match the filter."""
        a = snapshot.agent
        summary = self.query_one("#agent-summary", Static)
        if a is None:
            summary.update("no policy status yet: is the operator running?")
        else:
            style = PHASE_STYLES.get(a.phase, "")
            summary.update(
                f"[b {style}]{a.phase}[/]  mode {a.mode}  v{a.version}\n"
                f"decisions {a.decisions}  updates {a.updates}  "
                f"epsilon {a.epsilon:.3f}  reward EMA {a.reward_ema:+.3f}"
            )
        self.query_one("#reward-trend", Sparkline).data = list(a.rewards) if a else []
        table = self.query_one("#decisions", SyncedTable)
        order = {w.key: i for i, w in enumerate(snapshot.decisions)}
        table.sort_column = "workload"
        table.sync(
            {
                w.key: (
                    cells.Cell(w.name[:NAME_WIDTH], order[w.key]),
                    cells.plain(w.backend),
                    cells.plain(w.node),
                    cells.mode(w.mode),
                    cells.predicted(w.predicted_s, w.predicted_sigma),
                    cells.seconds(w.duration_s),
                    cells.signed(w.reward),
                )
                for w in snapshot.decisions
            }
        )
