"""User-side pieces the cookbook's entry points take as configuration: a toy RL task
(a ``ProblemEnv``, as a cookbook user writes one) and small local data files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import chz
from tinker_cookbook import renderers
from tinker_cookbook.rl.problem_env import ProblemEnv, ProblemGroupBuilder
from tinker_cookbook.rl.types import EnvGroupBuilder, RLDataset, RLDatasetBuilder
from tinker_cookbook.tokenizer_utils import get_tokenizer

WORDS = ["cat", "dog", "mat", "park", "fox", "lazy", "quick", "brown"]


class EchoEnv(ProblemEnv):
    """Reward for answering with the word the question names."""

    def __init__(self, renderer: renderers.Renderer, word: str) -> None:
        super().__init__(renderer)
        self.word = word

    def get_question(self) -> str:
        return f"say {self.word}"

    def check_answer(self, sample_str: str) -> bool:
        return self.word in sample_str

    def check_format(self, sample_str: str) -> bool:
        return sample_str.strip() != ""

    def get_reference_answer(self) -> str:
        return self.word


class EchoDataset(RLDataset):
    def __init__(self, renderer: renderers.Renderer, batches: int, groups: int, group_size: int):
        self.renderer, self.batches, self.groups, self.group_size = (
            renderer,
            batches,
            groups,
            group_size,
        )

    def get_batch(self, index: int) -> Sequence[EnvGroupBuilder]:
        return [
            ProblemGroupBuilder(
                env_thunk=partial(
                    EchoEnv, self.renderer, WORDS[(index * self.groups + g) % len(WORDS)]
                ),
                num_envs=self.group_size,
                dataset_name="echo",
            )
            for g in range(self.groups)
        ]

    def __len__(self) -> int:
        return self.batches


@chz.chz
class EchoDatasetBuilder(RLDatasetBuilder):
    model_name_for_tokenizer: str
    renderer_name: str = "role_colon"
    batches: int = 3
    groups: int = 2
    group_size: int = 2

    async def __call__(self) -> tuple[RLDataset, RLDataset | None]:
        tok = get_tokenizer(self.model_name_for_tokenizer)
        renderer = renderers.get_renderer(self.renderer_name, tok)
        return EchoDataset(renderer, self.batches, self.groups, self.group_size), None


def write_conversations(path: Path) -> Path:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"say {w}"},
                {"role": "assistant", "content": f"{w} {w}"},
            ]
        }
        for w in WORDS
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def write_comparisons(path: Path) -> Path:
    """DPO pairs in the cookbook's ``LabeledComparison`` JSONL form."""
    rows = []
    for i, w in enumerate(WORDS):
        prompt = [{"role": "user", "content": f"say {w}"}]
        rows.append(
            {
                "comparison": {
                    "prompt_conversation": prompt,
                    "completion_A": [{"role": "assistant", "content": f"{w} {w}"}],
                    "completion_B": [{"role": "assistant", "content": WORDS[(i + 1) % len(WORDS)]}],
                },
                "label": "A",
            }
        )
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path
