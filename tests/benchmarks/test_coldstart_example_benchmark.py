"""benchmarks/coldstart_example.py on a tiny two-tower folder keyed like ml-100k: every new movie gets a rank
within the catalogue, and the rank is where recommend puts it."""

import json
import subprocess
import sys
from pathlib import Path

import torch

from jointembed import PretrainedTwoTower
from jointembed.encoders.text import ScratchTextEncoder
from jointembed.models.two_tower import TwoTowerRecommender

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "coldstart_example.py"
KEYS = [1, 50, 172, 181, 7, 9]
TEXTS = ["Toy Story. genres: animation", "Star Wars. genres: sci-fi, war", "Empire. genres: sci-fi, war",
         "Jedi. genres: sci-fi, war", "Heat. genres: crime", "Fargo. genres: crime"]  # fmt: skip


def test_every_new_movie_gets_its_rank_for_every_fan(tmp_path: Path) -> None:
    torch.manual_seed(0)
    content = ScratchTextEncoder(num_buckets=64, min_ngram=0, embedding_dim=8, architecture="bag", output_dim=8)
    model = TwoTowerRecommender(content, num_items=6, id_dim=4, hidden_sizes=[8], wide=True, cold_deep=0.0)
    warm = [True] * 6
    model.fit_wide(TEXTS, torch.tensor(warm), torch.tensor([5.0, 9.0, 7.0, 8.0, 2.0, 3.0]))
    extra = {"item_keys": KEYS, "item_texts": TEXTS, "warm": warm, "item_titles": TEXTS}
    folder = model.save_pretrained(tmp_path / "pretrained", extra)
    out = tmp_path / "example.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--folder", str(folder), "--out", str(out)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    line = json.loads(done.stdout)
    assert json.loads(out.read_text()) == line and line["movies_ranked"] == 5  # 6 + 2 new, 3 watched
    served = PretrainedTwoTower.from_pretrained(folder)
    served.add_items(["space-opera", "galaxy-wars"], ["Space Opera. genres: action, sci-fi. year: 1998",
                     "Galaxy Wars. genres: action, adventure, romance, sci-fi, war. year: 1998"])  # fmt: skip
    for fan, history in {"star_wars_jedi_toy_story": [50, 181, 1], "star_wars_trilogy": [50, 181, 172]}.items():
        ranked = [item.key for item in served.recommend(history, k=5)]
        assert line["rank"][fan] == {key: ranked.index(key) + 1 for key in ("space-opera", "galaxy-wars")}
