"""A bilingual corpus: kitchen's bundled English cooking corpus plus a Spanish one
generated the same way (templates and word lists, ``random.Random`` with a fixed seed,
so the same seed gives byte-identical files).

``write_bilingual(out_dir, seed)`` writes ``train.txt`` / ``valid.txt`` (both languages,
lines interleaved in a seeded order) and ``valid_en.txt`` / ``valid_es.txt`` (each
language's validation lines alone, for the per-language validation loss).
"""

from __future__ import annotations

import random
from pathlib import Path

from kitchen.io import atomic_write_text

NOMBRES = ["Ana", "Bruno", "Carmen", "Diego", "Elena", "Felipe", "Lucía", "Marta", "Nico",
           "Paula", "Raúl", "Sofía", "Tomás", "Valeria"]  # fmt: skip
PLATOS = ["una sopa de tomate", "una tortilla de patatas", "un arroz con verduras",
          "unas lentejas", "un pan de ajo", "una ensalada de garbanzos", "un guiso de pollo",
          "una crema de calabaza", "unos huevos rotos", "un pescado al horno"]  # fmt: skip
INGREDIENTES = ["el aceite de oliva", "la cebolla", "el ajo", "la sal", "el pimentón",
                "el tomate", "el arroz", "la harina", "el limón", "el perejil", "la pimienta",
                "el caldo"]  # fmt: skip
UTENSILIOS = ["la sartén", "la olla", "el horno", "el cuchillo", "la tabla", "el cazo"]
MOMENTOS = ["por la mañana", "al mediodía", "por la tarde", "el domingo", "en verano",
            "en invierno", "después del trabajo"]  # fmt: skip
VERBOS = ["corta", "mezcla", "calienta", "prueba", "añade", "remueve", "sirve", "lava"]
MINUTOS = ["cinco", "diez", "quince", "veinte", "treinta"]


def _line(rng: random.Random) -> str:
    n, plato = rng.choice(NOMBRES), rng.choice(PLATOS)
    a, b = rng.sample(INGREDIENTES, 2)
    kind = rng.randrange(5)
    if kind == 0:
        return (
            f"{n} prepara {plato} {rng.choice(MOMENTOS)}. Primero {rng.choice(VERBOS)} "
            f"{a} y después {rng.choice(VERBOS)} {b} en {rng.choice(UTENSILIOS)}."
        )
    if kind == 1:
        return (
            f"Receta: para {plato} necesitas {a}, {b} y un poco de paciencia. "
            f"Cocina a fuego lento durante {rng.choice(MINUTOS)} minutos."
        )
    if kind == 2:
        return f"Consejo: guarda {a} en un lugar fresco y seco; así dura más y conserva su sabor."
    if kind == 3:
        m = rng.choice(NOMBRES)
        return (
            f"—¿Qué cocinamos hoy? —pregunta {n}. —{plato.capitalize()} —responde {m}, "
            f"y saca {rng.choice(UTENSILIOS)}."
        )
    return (
        f"En la cocina de {n} siempre hay {a}. {rng.choice(MOMENTOS).capitalize()} "
        f"{rng.choice(VERBOS)} {b} para {plato}."
    )


def spanish_lines(n: int, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    return [_line(rng) for _ in range(n)]


def write_bilingual(out_dir: Path, seed: int = 1234) -> dict[str, int]:
    """Write the bilingual corpus; returns line counts per file."""
    from kitchen.data import corpus_path

    en_train = corpus_path("train.txt").read_text("utf-8").splitlines()
    en_valid = corpus_path("valid.txt").read_text("utf-8").splitlines()
    # about as many Spanish characters as English ones
    per_line = max(1, sum(map(len, en_train)) // max(1, len(en_train)))
    es_avg = sum(map(len, spanish_lines(50, seed))) // 50
    n_train = max(10, len(en_train) * per_line // max(1, es_avg))
    es_train = spanish_lines(n_train, seed)
    # held out: validation lines never seen in training (the templates repeat sometimes)
    seen = set(es_train)
    es_valid = list(dict.fromkeys(x for x in spanish_lines(n_train, seed + 1) if x not in seen))
    es_valid = es_valid[: max(5, n_train // 8)]
    rng = random.Random(seed)
    train = en_train + es_train
    valid = en_valid + es_valid
    rng.shuffle(train)
    rng.shuffle(valid)
    files = {
        "train.txt": train,
        "valid.txt": valid,
        "valid_en.txt": en_valid,
        "valid_es.txt": es_valid,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        atomic_write_text(out_dir / name, "\n".join(lines) + "\n")
    return {name: len(lines) for name, lines in files.items()}
