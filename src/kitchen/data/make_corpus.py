"""Generate kitchen's bundled cooking corpus (deterministic; the output is committed).

    python -m kitchen.data.make_corpus [--out DIR] [--seed 1234]

Writes ``train.txt`` and ``valid.txt`` (one short passage per line: recipes, kitchen
stories, facts, tips and small dialogues, built from templates and word lists written for
this project and dedicated to the public domain) and ``chat.jsonl`` (chat conversations
with ``messages``, some multi-turn, some with a system message). Only ``random.Random``
with a fixed seed is used, so the same seed gives byte-identical files on any platform.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from kitchen.io import atomic_write_text

T = TypeVar("T")

NAMES = [
    "Ada",
    "Ben",
    "Clara",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kemi",
    "Luca",
    "Maya",
    "Nils",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Umar",
    "Vera",
    "Wen",
    "Yusuf",
    "Zoe",
]
PRONOUN = {
    n: (
        "she"
        if n
        in {
            "Ada",
            "Clara",
            "Elena",
            "Grace",
            "Ines",
            "Kemi",
            "Maya",
            "Olga",
            "Rosa",
            "Tara",
            "Vera",
            "Wen",
            "Zoe",
        }
        else "he"
    )
    for n in NAMES
}
PEOPLE = [
    "{poss} grandmother",
    "{poss} brother",
    "the neighbours",
    "a group of friends",
    "the whole family",
    "two hungry children",
    "an old teacher",
    "the night shift",
    "a visiting cousin",
    "the football team",
    "{poss} colleagues",
    "{poss} parents",
]
POSSESSIVE = {"she": "her", "he": "his"}
PREP = [
    ("chop", "chopped", "chopping"),
    ("slice", "sliced", "slicing"),
    ("dice", "diced", "dicing"),
    ("peel", "peeled", "peeling"),
    ("wash", "washed", "washing"),
]
CUTTERS = ["knife", "sharp knife", "small knife", "peeler", "grater"]
VEGETABLES = [
    "onions",
    "garlic",
    "carrots",
    "potatoes",
    "tomatoes",
    "peppers",
    "mushrooms",
    "spinach",
    "leeks",
    "courgettes",
    "aubergines",
    "beans",
    "peas",
    "cabbage",
    "celery",
    "pumpkin",
    "sweet potatoes",
    "broccoli",
    "cauliflower",
    "shallots",
    "radishes",
    "beetroot",
]
PROTEINS = [
    "chicken",
    "beef",
    "lamb",
    "pork",
    "salmon",
    "cod",
    "prawns",
    "tofu",
    "eggs",
    "lentils",
    "chickpeas",
    "halloumi",
    "mussels",
    "duck",
    "turkey",
    "tempeh",
]
PANTRY = [
    "rice",
    "flour",
    "butter",
    "olive oil",
    "sugar",
    "salt",
    "black pepper",
    "honey",
    "milk",
    "cream",
    "yoghurt",
    "vinegar",
    "soy sauce",
    "stock",
    "pasta",
    "noodles",
    "oats",
    "cheese",
    "lemon juice",
    "mustard",
    "cumin",
    "paprika",
    "cinnamon",
    "ginger",
    "thyme",
    "basil",
    "parsley",
    "coriander",
    "chilli flakes",
    "breadcrumbs",
    "coconut milk",
    "tomato paste",
]
DISHES = [
    ("a vegetable soup", "soup"),
    ("a lentil stew", "stew"),
    ("a tomato sauce", "sauce"),
    ("a mushroom risotto", "risotto"),
    ("a potato gratin", "gratin"),
    ("a fish pie", "pie"),
    ("a chicken curry", "curry"),
    ("a bean chilli", "chilli"),
    ("a lemon cake", "cake"),
    ("a loaf of bread", "bread"),
    ("a pan of fried rice", "fried rice"),
    ("a bowl of porridge", "porridge"),
    ("a spinach omelette", "omelette"),
    ("a roast dinner", "roast"),
    ("a plate of pancakes", "pancakes"),
    ("a noodle soup", "noodle soup"),
    ("an apple crumble", "crumble"),
    ("a pot of dal", "dal"),
    ("a green salad", "salad"),
    ("a tray of roasted vegetables", "tray bake"),
    ("a batch of cookies", "cookies"),
    ("a pumpkin pie", "pie"),
    ("a pasta bake", "pasta bake"),
]
TOOLS = {
    "knife": "cut and chop food",
    "chopping board": "protect the counter while cutting",
    "saucepan": "boil and simmer liquids",
    "frying pan": "fry and sear food quickly",
    "whisk": "beat eggs and cream until they are light",
    "colander": "drain pasta and rinse vegetables",
    "grater": "shred cheese and vegetables",
    "rolling pin": "flatten dough evenly",
    "ladle": "serve soup and stew",
    "oven": "bake and roast with dry heat",
    "peeler": "remove thin skins from vegetables",
    "sieve": "sift flour and strain sauces",
    "wooden spoon": "stir without scratching the pan",
    "baking tray": "roast vegetables and bake biscuits",
    "mixing bowl": "combine ingredients",
    "kettle": "boil water fast",
    "blender": "turn soup and fruit smooth",
    "thermometer": "check that meat is cooked through",
    "timer": "remember when the food is ready",
    "tongs": "turn food in a hot pan",
    "steamer": "cook vegetables gently over boiling water",
    "mortar and pestle": "crush spices and herbs",
}
ACTIONS = [
    ("chop", "chopped", "chopping"),
    ("slice", "sliced", "slicing"),
    ("dice", "diced", "dicing"),
    ("fry", "fried", "frying"),
    ("boil", "boiled", "boiling"),
    ("simmer", "simmered", "simmering"),
    ("roast", "roasted", "roasting"),
    ("bake", "baked", "baking"),
    ("stir", "stirred", "stirring"),
    ("grate", "grated", "grating"),
    ("peel", "peeled", "peeling"),
    ("steam", "steamed", "steaming"),
    ("whisk", "whisked", "whisking"),
    ("mash", "mashed", "mashing"),
    ("season", "seasoned", "seasoning"),
    ("grill", "grilled", "grilling"),
    ("toast", "toasted", "toasting"),
    ("knead", "kneaded", "kneading"),
]
HEAT = ["a low heat", "a medium heat", "a high heat", "a gentle heat"]
TIMES = [
    "early in the morning",
    "late at night",
    "on a rainy Sunday",
    "just before lunch",
    "after a long day at work",
    "on the first warm evening of spring",
    "in the middle of winter",
    "on a busy Friday",
    "before the guests arrived",
    "while the radio played",
]
FEELINGS = [
    "happy",
    "tired",
    "curious",
    "nervous",
    "proud",
    "hungry",
    "calm",
    "excited",
    "worried",
]
ENDINGS = [
    "Everyone asked for a second helping.",
    "The kitchen smelled wonderful for hours.",
    "Nothing was left on the plates.",
    "It was not perfect, but it tasted like home.",
    "The recipe went into the family notebook.",
    "They laughed about the mess afterwards.",
    "Next time, {p} decided, there would be more {x}.",
    "It was the best {d} {p} had ever made.",
    "The dog waited hopefully under the table.",
    "By nine o'clock the pot was empty.",
]
PROBLEMS = [
    ("the sauce was too thin", "let it simmer without a lid for a few more minutes"),
    ("the soup was too salty", "add a peeled potato and more water, then taste again"),
    ("the onions started to burn", "turn the heat down and add a splash of water"),
    ("the dough was too sticky", "dust the board with a little more flour"),
    (
        "the cake sank in the middle",
        "check the oven temperature and do not open the door too early",
    ),
    ("the rice stuck to the pan", "rinse the rice first and use a little more water next time"),
    ("the pasta was too soft", "taste it a few minutes before the time on the packet"),
    ("the meat was tough", "cook it slowly for longer, or slice it thinly across the grain"),
    ("the vegetables were soggy", "roast them in a single layer so they do not steam"),
    ("the cream split", "keep the heat low and stop boiling once the cream is in"),
]
TIPS = [
    "read the whole recipe before you start",
    "keep your knives sharp, because a dull knife slips",
    "taste as you cook and adjust the seasoning",
    "let meat rest before you slice it",
    "salt the pasta water well",
    "wash your hands after handling raw meat",
    "clean as you go so the counter stays clear",
    "warm the plates before serving hot food",
    "measure flour by weight for baking",
    "toast spices in a dry pan to wake up their flavour",
    "never leave hot oil unattended",
    "store herbs in a glass of water like flowers",
    "use a separate board for raw meat and vegetables",
    "cool leftovers quickly and keep them cold",
    "add acid, such as lemon juice, to brighten a heavy dish",
    "keep a tea towel over your shoulder",
]
SUBSTITUTES = [
    ("butter", "olive oil", "it works in most savoury dishes"),
    ("cream", "yoghurt", "stir it in off the heat so it does not split"),
    ("eggs", "mashed banana", "it binds cakes and pancakes well"),
    ("breadcrumbs", "crushed oats", "they give the same crunch"),
    ("soy sauce", "salt and a little vinegar", "the taste is simpler but still good"),
    ("stock", "water with a pinch of salt and herbs", "it is lighter but fine for soup"),
    ("milk", "oat milk", "it behaves the same in most sauces"),
    ("rice", "small pasta", "it cooks in a similar time"),
    ("lemon juice", "vinegar", "use a little less because it is sharper"),
    ("honey", "sugar", "add a splash of water to keep it moist"),
    ("fresh basil", "dried basil", "use a third of the amount"),
    ("chicken", "chickpeas", "they keep the dish filling and take less time"),
]
SERVE = [
    "with crusty bread",
    "with a green salad",
    "over rice",
    "with a spoon of yoghurt",
    "while it is still warm",
    "with fresh herbs on top",
    "with a squeeze of lemon",
    "in deep bowls",
    "straight from the pan",
    "with a glass of cold water",
]
SYSTEMS = [
    "You are a friendly cooking assistant. Keep answers short and practical.",
    "You are a patient chef who explains each step clearly.",
    "You help home cooks. Answer in two or three sentences.",
]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class Gen:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def pick(self, seq: Sequence[T]) -> T:
        return self.r.choice(seq)

    def ingredients(self, k: int) -> list[str]:
        pool = VEGETABLES + PROTEINS + PANTRY
        return self.r.sample(pool, k)

    def recipe(self) -> str:
        dish, short = self.pick(DISHES)
        a, b = self.r.sample(VEGETABLES, 2)
        c = self.pick(PROTEINS + VEGETABLES)
        while c in (a, b):
            c = self.pick(PROTEINS + VEGETABLES)
        d = self.pick(PANTRY)
        act1 = self.pick(PREP)
        act2 = self.pick([x for x in ACTIONS if x[0] in {"fry", "stir", "simmer", "steam", "boil"}])
        tool = self.pick(CUTTERS)
        mins = self.r.choice([3, 5, 8, 10, 12, 15, 20, 25, 30, 40, 45, 60])
        parts = [
            f"To make {dish}, you need {_list([a, b, c])} and a little {d}.",
            f"First, {act1[0]} the {a} with the {tool}.",
            f"Then put the {b} in a pan over {self.pick(HEAT)} "
            f"and {act2[0]} it for {mins} minutes.",
            f"Add the {c}, season with {self.pick(PANTRY)}, and cook until everything is tender.",
        ]
        if self.r.random() < 0.5:
            prob, fix = self.pick(PROBLEMS)
            parts.append(f"If {prob}, {fix}.")
        parts.append(f"Serve the {short} {self.pick(SERVE)}.")
        return " ".join(parts)

    def story(self) -> str:
        name = str(self.pick(NAMES))
        p = PRONOUN[name]
        dish, short = self.pick(DISHES)
        who = str(self.pick(PEOPLE)).format(poss=POSSESSIVE[p])
        a = self.pick(VEGETABLES)
        b = self.pick(PROTEINS + PANTRY[:12])
        act = self.pick(PREP)
        feel = self.pick(FEELINGS)
        prob, fix = self.pick(PROBLEMS)
        s = [
            f"{name} walked into the kitchen {self.pick(TIMES)}, feeling {feel}.",
            f"{_cap(p)} wanted to cook {dish} for {who}.",
            f"{_cap(p)} found some {a} and {b} in the cupboard and started {act[2]} the {a}.",
        ]
        if self.r.random() < 0.6:
            s.append(f"Halfway through, {prob}, so {p} remembered the old advice: {fix}.")
        if self.r.random() < 0.4:
            other = self.pick([n for n in NAMES if n != name])
            s.append(
                f'"Can I help?" asked {other}. '
                f'"Yes, please {self.pick(PREP)[0]} the {a}," said {name}.'
            )
        end = str(self.pick(ENDINGS)).format(p=p, x=b, d=short)
        s.append(end)
        return " ".join(s)

    def fact(self) -> str:
        tool = str(self.pick(list(TOOLS)))
        ing = self.pick(VEGETABLES)
        act = self.pick(ACTIONS)
        forms = [
            f"A {tool} is used to {TOOLS[tool]}.",
            f"Cooks use a {tool} to {TOOLS[tool]}, and a good one lasts for years.",
            f"{_cap(str(ing))} can be {act[1]}, and many people like them best that way.",
            f"When you {act[0]} {ing}, keep the pieces the same size so they cook evenly.",
            f"Tip: {self.pick(TIPS)}.",
            f"A simple rule in every kitchen is to {self.pick(TIPS)}.",
            f"If {self.pick(PROBLEMS)[0]}, the fix is easy: {self.pick(PROBLEMS)[1]}.",
        ]
        k = self.r.randint(2, 4)
        return " ".join(self.r.sample(forms, k))

    def dialogue(self) -> str:
        x, y = self.r.sample(NAMES, 2)
        old, new, why = self.pick(SUBSTITUTES)
        dish, _ = self.pick(DISHES)
        return (
            f'{x} asked, "We have no {old}. What can I use for {dish}?" '
            f'{y} answered, "Use {new}; {why}."'
        )

    def passage(self) -> str:
        kind = self.r.random()
        if kind < 0.3:
            return self.recipe()
        if kind < 0.65:
            return self.story()
        if kind < 0.85:
            return self.fact()
        return self.dialogue()

    # -- chat ---------------------------------------------------------------------------
    def exchange(self) -> tuple[str, str]:
        kind = self.r.randrange(5)
        if kind == 0:
            dish, short = self.pick(DISHES)
            a = self.pick(VEGETABLES)
            b = self.pick(PROTEINS)
            c = self.pick(PANTRY)
            act = self.pick(PREP)
            mins = self.r.choice([5, 10, 15, 20, 30, 45])
            return (
                f"How do I make {dish}?",
                f"Start by {act[2]} the {a}. Cook it with the {b} for about {mins} minutes, "
                f"then add the {c}. Serve the {short} {self.pick(SERVE)}.",
            )
        if kind == 1:
            old, new, why = self.pick(SUBSTITUTES)
            return (f"What can I use instead of {old}?", f"You can use {new}; {why}.")
        if kind == 2:
            prob, fix = self.pick(PROBLEMS)
            return (f"Help, {prob}. What should I do?", f"Don't worry. {_cap(fix)}.")
        if kind == 3:
            tool = str(self.pick(list(TOOLS)))
            return (f"What is a {tool} for?", f"A {tool} is used to {TOOLS[tool]}.")
        tip = self.pick(TIPS)
        return ("Do you have a kitchen tip for me?", f"Yes: {tip}.")

    def conversation(self) -> dict[str, list[dict[str, str]]]:
        msgs: list[dict[str, str]] = []
        if self.r.random() < 0.3:
            msgs.append({"role": "system", "content": str(self.pick(SYSTEMS))})
        for _ in range(self.r.choice([1, 1, 2, 2, 3])):
            q, a = self.exchange()
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        return {"messages": msgs}


def generate(
    seed: int = 1234, train_lines: int = 650, valid_lines: int = 70, chats: int = 200
) -> dict[str, str]:
    gen = Gen(seed)
    train = [gen.passage() for _ in range(train_lines)]
    valid = [gen.passage() for _ in range(valid_lines)]
    chat = [gen.conversation() for _ in range(chats)]
    return {
        "train.txt": "\n".join(train) + "\n",
        "valid.txt": "\n".join(valid) + "\n",
        "chat.jsonl": "".join(
            json.dumps(c, ensure_ascii=False, sort_keys=True) + "\n" for c in chat
        ),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "corpus"))
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args(argv)
    for name, text in generate(args.seed).items():
        atomic_write_text(Path(args.out) / name, text)
        print(f"wrote {Path(args.out) / name} ({len(text.encode())} bytes)")


if __name__ == "__main__":
    main()
