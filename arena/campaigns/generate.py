"""Generate a campaign's answers through the arena's own backends and templates.

Every prompt x candidate x setting x run that has no stored answer yet is asked, at most
``concurrency`` at a time; each answer is stored as soon as it is complete, so an interrupted run
loses only the answers in flight and the next run picks up where it stopped (failed answers are
asked again). Each answer keeps the exact rendered prompt of its last turn (the messages, as JSON,
for a server that applies its own template; it holds the earlier turns and answers), its parameters,
the finish reason of each turn (comma-separated), the tokens of all turns, the first turn's time to
first token and the time of all turns.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from arena import templates
from arena.backends.base import Backend
from arena.campaigns.model import Campaign, CampaignAnswer, CampaignPrompt, answer_id, setting_temperature
from arena.domain import Message
from arena.errors import ArenaError, ConfigError
from arena.registry import ModelSpec

__all__ = [
    "GenerationJob",
    "GenerationReport",
    "StaleAnswer",
    "describe_stale",
    "generate_answers",
    "plan_jobs",
    "stale_answers",
]


@dataclass(frozen=True)
class GenerationJob:
    prompt: CampaignPrompt
    candidate: str
    setting: str
    run: int


@dataclass
class GenerationReport:
    planned: int = 0  # answers the campaign needs
    skipped: int = 0  # already stored without error
    generated: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)  # error kind -> count

    @property
    def answers_per_second(self) -> float:
        return (self.generated + self.failed) / self.seconds if self.seconds > 0 else 0.0


def plan_jobs(
    campaign: Campaign, prompts: Sequence[CampaignPrompt], done: Collection[str]
) -> tuple[list[GenerationJob], int]:
    """The answers still missing (and how many are already stored)."""
    jobs: list[GenerationJob] = []
    skipped = 0
    for prompt in prompts:
        for candidate in campaign.candidates:
            for setting in campaign.settings:
                for run in range(1, campaign.runs + 1):
                    if answer_id(campaign.id, prompt.id, candidate, setting, run) in done:
                        skipped += 1
                    else:
                        jobs.append(GenerationJob(prompt, candidate, setting, run))
    return jobs, skipped


def _request_for(spec: ModelSpec, conversation: list[Message], setting: str, cap: int | None) -> templates.Prepared:
    temperature = setting_temperature(setting)
    if temperature is not None:
        update: dict[str, object] = {"temperature": temperature}
        if temperature == 0:
            update["do_sample"] = False
        spec = spec.model_copy(update={"params": spec.params.model_copy(update=update)})
    return templates.prepare(spec, conversation, max_new_tokens_cap=cap)


def _recorded(prepared: templates.Prepared) -> tuple[str, dict[str, object]]:
    """What an answer keeps of its last turn's request: the rendered prompt (or messages) and parameters."""
    rendered = prepared.text
    if rendered is None:
        rendered = json.dumps(list(prepared.request.messages), ensure_ascii=False)
    return rendered, prepared.request.params.model_dump(exclude_none=True)


@dataclass(frozen=True)
class StaleAnswer:
    """A stored answer that ``generate`` would now ask for differently, and what differs."""

    answer_id: str
    candidate: str
    changes: tuple[str, ...]  # "max_new_tokens 512 -> 256", "temperature 0.7 -> 0.5", "prompt format"


def stale_answers(
    campaign: Campaign,
    prompts: Sequence[CampaignPrompt],
    answers: Sequence[CampaignAnswer],
    specs: Mapping[str, ModelSpec],
    *,
    before: Campaign | None = None,
) -> list[StaleAnswer]:
    """The generated answers whose request would differ if they were generated now.

    For each stored answer generated here (not imported, not failed) of a roster candidate, the
    request of its last turn is built again from the prompt, the answer's own earlier turns, the
    model's entry in the roster and the campaign's settings, and compared with the rendered prompt
    and parameters the answer recorded. Any difference (``max_new_tokens``, the setting's
    temperature, the model's sampling parameters, its template or system prompt) means the model
    would now be asked something else, so the answer does not belong with the ones made now.
    Answers of a setting or run no longer in the campaign are not checked (they are not judged;
    see :func:`arena.campaigns.service.sort_answers`), nor are those whose prompt changed words
    (:meth:`arena.storage.campaigns.CampaignStore.save_campaign` handles them).

    A candidate missing from ``specs`` cannot be asked again, but with ``before`` (the campaign as
    stored) a changed ``max_new_tokens`` is still judged from the cap its answers recorded
    (:func:`_cap_changes`).
    """
    by_id = {p.id: p for p in prompts}
    stale: list[StaleAnswer] = []
    for a in answers:
        prompt = by_id.get(a.prompt_id)
        spec = specs.get(a.candidate)
        if (
            a.source != "generated"
            or a.error is not None
            or prompt is None
            or a.setting not in campaign.settings
            or a.run > campaign.runs
            or len(a.turns) != len(prompt.turns)
        ):
            continue
        if spec is None:
            change = _cap_changes(a, before, campaign) if before is not None else None
            if change:
                stale.append(StaleAnswer(a.id, a.candidate, (change,)))
            continue
        conversation: list[Message] = []
        if prompt.system:
            conversation.append({"role": "system", "content": prompt.system})
        for i, user in enumerate(prompt.turns):
            conversation.append({"role": "user", "content": user})
            if i < len(prompt.turns) - 1:
                conversation.append({"role": "assistant", "content": a.turns[i]})
        try:
            rendered, params = _recorded(_request_for(spec, conversation, a.setting, campaign.max_new_tokens))
        except ArenaError as e:
            stale.append(StaleAnswer(a.id, a.candidate, (f"cannot be asked now ({type(e).__name__})",)))
            continue
        params = json.loads(json.dumps(params))  # as stored: tuples become lists
        changes = [
            f"{k} {a.params.get(k, '-')} -> {params.get(k, '-')}"
            for k in sorted({*a.params, *params})
            if a.params.get(k) != params.get(k)
        ]
        if (a.rendered_prompt or "") != rendered.replace("\x00", "\ufffd"):
            changes.append("prompt format")  # the template, the system prompt or the kept history
        if changes:
            stale.append(StaleAnswer(a.id, a.candidate, tuple(changes)))
    return stale


def _cap_changes(answer: CampaignAnswer, before: Campaign, now: Campaign) -> str | None:
    """How a new campaign cap changes an answer whose model is not in the roster, if it may.

    The answer recorded ``min(own, old cap)``; the model would now get ``min(own, new cap)``. When
    the recorded value is below the old cap it is the model's own, and the answer is stale only if
    the new cap is lower; when it equals the old cap, the model's own may be higher, so a higher
    (or no) new cap may change it too.
    """
    old, new = before.max_new_tokens, now.max_new_tokens
    recorded = answer.params.get("max_new_tokens")
    if old == new or not isinstance(recorded, int):
        return None
    if old is None or recorded < old:  # the recorded cap is the model's own
        if new is None or new >= recorded:
            return None
    elif new == recorded:
        return None
    return f"max_new_tokens {recorded} -> {'uncapped' if new is None else new}"


def describe_stale(stale: Sequence[StaleAnswer]) -> str:
    """One line: how many answers, and what changed for each candidate (``aurora-7b: max_new_tokens 40 -> 20``)."""
    by_candidate: dict[str, dict[str, None]] = {}
    for s in stale:
        by_candidate.setdefault(s.candidate, {}).update(dict.fromkeys(s.changes))
    parts = [f"{c}: {', '.join(list(ch)[:3])}{' ...' if len(ch) > 3 else ''}" for c, ch in sorted(by_candidate.items())]
    listed = "; ".join(parts[:4]) + ("; ..." if len(parts) > 4 else "")
    return f"{len(stale)} stored answer{'s' if len(stale) != 1 else ''} were generated under other settings ({listed})"


@dataclass(frozen=True)
class _Turn:
    """One streamed answer: its text, why it ended, and its timings (seconds)."""

    text: str
    finish: str | None
    tokens: int | None
    ttft: float | None
    total: float


async def _answer_turn(backend: Backend, prepared: templates.Prepared, clock: Callable[[], float]) -> _Turn:
    request = prepared.request
    stops = templates.StopFilter(request.stop)
    text = ""
    finish: str | None = None
    tokens: int | None = None
    start = clock()
    ttft: float | None = None
    async for chunk in backend.stream(request):
        if chunk.text:
            if ttft is None:
                ttft = clock() - start
            text += stops.feed(chunk.text)
        if chunk.generated_tokens is not None:
            tokens = chunk.generated_tokens
        if chunk.finish_reason is not None:
            finish = chunk.finish_reason
        if stops.stopped:
            finish = "stop"
            break
    text += stops.flush()
    return _Turn(text=text, finish=finish, tokens=tokens, ttft=ttft, total=clock() - start)


async def _one(
    job: GenerationJob, campaign: Campaign, spec: ModelSpec, backend: Backend, clock: Callable[[], float]
) -> CampaignAnswer:
    conversation: list[Message] = []
    if job.prompt.system:
        conversation.append({"role": "system", "content": job.prompt.system})
    turns: list[str] = []
    finishes: list[str] = []
    last: _Turn | None = None
    prepared: templates.Prepared | None = None
    ttft_ms = total_ms = None
    tokens = 0
    error: str | None = None
    try:
        for user in job.prompt.turns:
            conversation.append({"role": "user", "content": user})
            prepared = _request_for(spec, conversation, job.setting, campaign.max_new_tokens)
            last = await _answer_turn(backend, prepared, clock)
            turns.append(last.text)
            finishes.append(last.finish or "unknown")
            conversation.append({"role": "assistant", "content": last.text})
            if ttft_ms is None and last.ttft is not None:
                ttft_ms = round(last.ttft * 1000)
            total_ms = (total_ms or 0) + round(last.total * 1000)
            tokens += last.tokens or 0
    except ArenaError as e:
        error = type(e).__name__
    rendered = None
    params: dict[str, object] = {}
    if prepared is not None:
        rendered, params = _recorded(prepared)
    return CampaignAnswer(
        campaign_id=campaign.id,
        prompt_id=job.prompt.id,
        candidate=job.candidate,
        turns=tuple(turns),
        setting=job.setting,
        run=job.run,
        rendered_prompt=rendered,
        params=params,
        # One reason per turn ("length,eos"): a first answer cut short shapes every later turn.
        finish_reason=None if error or last is None else (",".join(finishes) if len(finishes) > 1 else last.finish),
        generated_tokens=tokens or None,
        ttft_ms=ttft_ms,
        total_ms=total_ms,
        error=error,
        source="generated",
        created_at=datetime.now(UTC),
    )


async def generate_answers(
    campaign: Campaign,
    prompts: Sequence[CampaignPrompt],
    specs: Mapping[str, ModelSpec],
    backends: Mapping[str, Backend],
    save: Callable[[CampaignAnswer], object],
    *,
    done: Collection[str] = frozenset(),
    concurrency: int = 4,
    progress: Callable[[int, int, GenerationReport], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> GenerationReport:
    """Ask every missing answer, ``concurrency`` at a time; ``save`` stores each one as it completes.

    ``save`` runs in a worker thread. ``progress(finished, total, report)`` is called after each answer.

    Raises
    ------
    ConfigError
        A candidate is not in the roster (answers of such candidates are imported, not generated),
        or ``concurrency`` is below 1.
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}.")
    missing = [c for c in campaign.candidates if c not in specs or c not in backends]
    if missing:
        raise ConfigError(
            f"campaign {campaign.id!r}: candidate(s) {', '.join(missing)} are not enabled models of the roster; "
            "add them to models.yaml, or import their answers with `python -m arena campaign import`."
        )
    jobs, skipped = plan_jobs(campaign, prompts, set(done))
    report = GenerationReport(planned=len(jobs) + skipped, skipped=skipped)
    queue: asyncio.Queue[GenerationJob] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    finished = 0
    start = clock()

    async def worker() -> None:
        nonlocal finished
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            answer = await _one(job, campaign, specs[job.candidate], backends[job.candidate], clock)
            await asyncio.to_thread(save, answer)
            if answer.error:
                report.failed += 1
                report.errors[answer.error] = report.errors.get(answer.error, 0) + 1
            else:
                report.generated += 1
            finished += 1
            report.seconds = clock() - start
            if progress is not None:
                progress(finished, len(jobs), report)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, max(1, len(jobs))))))
    report.seconds = clock() - start
    return report
