"""The README's cold-start example, measured: where a new movie, placed from its text alone, ranks for a Star
Wars fan among every movie of a trained two-tower folder.

Loads the ``pretrained/`` folder of a ``recipes/movielens_coldstart.yaml`` run, adds each new movie of
:data:`NEW_MOVIES` (not in the catalogue: no ID, no watch) and ranks it for each history of :data:`FANS` among
every movie the user has not watched. Prints one JSON line and writes it to ``--out`` (the results file the README
quotes).

    jointembed fit --config recipes/movielens_coldstart.yaml --data.init_args.path /path/to/ml-100k
    python benchmarks/coldstart_example.py --folder runs/movielens_coldstart/version_0/pretrained
"""

from __future__ import annotations

import argparse
import json

from jointembed import PretrainedTwoTower
from jointembed.io import atomic_write_json

#: ``(key, text, title)`` of the new movies, written as the catalogue's texts are ("title. genres: …. year: …").
NEW_MOVIES = [
    ("space-opera", "Space Opera. genres: action, sci-fi. year: 1998", "Space Opera (1998)"),
    ("galaxy-wars", "Galaxy Wars. genres: action, adventure, romance, sci-fi, war. year: 1998", "Galaxy Wars (1998)"),
]
#: MovieLens 100K movie IDs: Star Wars, Return of the Jedi, Toy Story; and Star Wars, Jedi, The Empire Strikes Back.
FANS = {"star_wars_jedi_toy_story": [50, 181, 1], "star_wars_trilogy": [50, 181, 172]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True, help="the pretrained folder of a movielens_coldstart run")
    parser.add_argument("--out", default=None, help="also write the JSON line here")
    args = parser.parse_args()
    recommender = PretrainedTwoTower.from_pretrained(args.folder)
    keys, texts, titles = zip(*NEW_MOVIES, strict=True)
    recommender.add_items(list(keys), list(texts), list(titles))
    catalogue = len(recommender.item_keys)
    ranks = {}
    for fan, history in FANS.items():
        ranked = [item.key for item in recommender.recommend(history, k=catalogue - len(history))]
        ranks[fan] = {key: ranked.index(key) + 1 for key in keys}
    result = {"folder": args.folder, "movies_ranked": catalogue - len(FANS["star_wars_trilogy"]), "rank": ranks}
    print(json.dumps(result))
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
