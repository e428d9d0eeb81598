"""`config log` and `config diff`: the history of RAGFlow's config files kept in Git."""
from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.syntax import Syntax
from rich.table import Table

from actors.config.backup import git_repo_path, history
from agent.commands.common import console, fail, state

config_app = typer.Typer(no_args_is_help=True, help="History of RAGFlow's config files (Git under the storage root).")


@config_app.command("log")
def log(limit: Annotated[int, typer.Option("-n", help="How many commits.")] = 20) -> None:
    """The newest commits: when, what changed."""

    commits = history(state.settings(), limit)
    if not commits:
        fail("no config history yet: run a backup, or start the agent")
    table = Table(title="config history")
    for column in ("commit", "time", "message", "files"):
        table.add_column(column, overflow="fold")
    for commit in commits:
        table.add_row(commit["sha"][:10], commit["time"], commit["message"], ", ".join(commit["files"]))
    console.print(table)


@config_app.command("diff")
def diff(
    old: Annotated[Optional[str], typer.Argument(help="Commit (default: the one before NEW).")] = None,
    new: Annotated[Optional[str], typer.Argument(help="Commit (default: the newest).")] = None,
) -> None:
    """What changed between two commits (secrets included: .env is versioned; mind who reads)."""
    import git  # lazy: GitPython (heavy; needs a git binary): only when config files are kept


    path = git_repo_path(state.settings())
    if not (path / ".git").is_dir():
        fail(f"no config history at {path} yet")
    repo = git.Repo(path)
    try:
        new_rev = new or "HEAD"
        old_rev = old or f"{new_rev}~1"
        text = repo.git.diff(old_rev, new_rev)
    except git.GitCommandError as exc:
        fail(f"cannot diff {old or 'previous'}..{new or 'HEAD'}: {exc.stderr.strip() or exc}")
    console.print(Syntax(text, "diff") if text else "no difference")
