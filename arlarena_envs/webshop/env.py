"""arlarena/WebShop-v0 (embedded catalogue) and arlarena/WebShop-original-v0 (original files).

Pages and actions as the original text env (`WebAgentTextEnv`): search page -> results (top 50,
10 per page, `next >` / `< prev`, `back to search`) -> item page (option values, `description`,
`features`, `reviews`, `< prev`, `buy now`) -> sub-pages (`< prev` back to the item page).
Actions: `search[<query>]` where the page has a search bar (from any page with
`search_anywhere=True`, as the original allows) and `click[<clickable>]` (lower-cased, as listed).
A query longer than `MAX_QUERY_CHARS` (after stripping) is not accepted: it parses as
`inadmissible` and is never executed (the original has no bound; a megabyte-long query would cost
seconds of search and make every later state hash expensive).

Reward as the paper: 10 when the purchase scores native reward 1.0, else 0
(`reward_mode="score"` pays the native reward in [0, 1] instead); `info["score"]` is the native
reward, `info["extra"]` holds its components after a purchase (see reward.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from arlarena_envs.core import TextEnv
from arlarena_envs.errors import DataError, InvalidArgumentError
from arlarena_envs.webshop import pages
from arlarena_envs.contract import SplitSpec
from arlarena_envs.webshop.catalogue import Catalogue, derived_splits
from arlarena_envs.webshop.matching import token_set_ratio
from arlarena_envs.webshop.reward import get_reward

SUCCESS_REWARD = 10.0
MAX_QUERY_CHARS = 500  # longest search[...] text accepted (goal instructions are < 300 chars)
_STATE_FIELDS = ("_page", "_keywords", "_results", "_page_no", "_asin", "_options", "_sub", "_clicked",
                 "_reward", "_reward_info", "_nodes_cache", "_clickables_cache")
BASE_URL = "http://127.0.0.1:3000"
_PRICE_CLAUSE = re.compile(r",? and price lower than [\d.]+ dollars$")
_ACTION = re.compile(r"^\s*(search|click)\s*\[(.*)\]\s*$", re.IGNORECASE | re.DOTALL)


class WebShopEnv(TextEnv):
    default_env_id = "arlarena/WebShop-v0"

    def __init__(
        self,
        *,
        catalogue: str = "embedded",
        catalogue_seed: int = 0,
        products_per_type: int | None = None,
        data_dir: str | None = None,
        store: str | None = None,
        human_goals: bool = False,
        price_seed: int = 0,
        nouns: str | None = None,
        spacy_model: str = "en_core_web_sm",
        observation_mode: str = "text",
        reward_mode: str = "success",
        score_mode: str = "original",
        search_anywhere: bool = False,
        show_attrs: bool = False,
        verify_data: bool = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if observation_mode not in ("text", "text_rich"):
            raise InvalidArgumentError(f"observation_mode must be 'text' or 'text_rich', got {observation_mode!r}")
        if reward_mode not in ("success", "score"):
            raise InvalidArgumentError(f"reward_mode must be 'success' or 'score', got {reward_mode!r}")
        if score_mode not in ("original", "corrected"):
            raise InvalidArgumentError(f"score_mode must be 'original' or 'corrected', got {score_mode!r}")
        self.observation_mode = observation_mode
        self.reward_mode = reward_mode
        self.score_mode = score_mode
        self.search_anywhere = bool(search_anywhere)
        self.show_attrs = bool(show_attrs)
        expected = {d.name: d.sha256 for d in self.env_spec.data} if verify_data else {}
        if catalogue == "embedded":
            from arlarena_envs.webshop.generator import PRODUCTS_PER_TYPE, load_embedded_catalogue

            if data_dir is not None or human_goals:
                raise InvalidArgumentError(
                    "data_dir / human_goals apply to the original data: use "
                    "make('arlarena/WebShop-original-v0', data_dir=...) (or catalogue='original')"
                )
            if nouns not in (None, "catalogue"):
                raise InvalidArgumentError("the embedded catalogue stores its nouns; nouns must be None or 'catalogue'")
            per_type = products_per_type or PRODUCTS_PER_TYPE
            spec_catalogue = catalogue_seed == 0 and per_type == PRODUCTS_PER_TYPE  # the one the spec's checksum is for
            self.catalogue: Catalogue = load_embedded_catalogue(
                catalogue_seed, per_type, expected.get("embedded-catalogue") if spec_catalogue else None
            )
        elif catalogue == "original":
            from arlarena_envs.webshop.original import load_original_catalogue

            exp = {k: v for k, v in expected.items() if k in ("products", "attributes", "goals")}
            if human_goals or price_seed != 0:
                exp = {k: v for k, v in exp.items() if k != "goals"}  # the spec records synthetic goals, seed 0
            self.catalogue = load_original_catalogue(
                data_dir, human_goals=human_goals, price_seed=price_seed, nouns=nouns or "heuristic", spacy_model=spacy_model, expected=exp
            )
        elif catalogue == "store":
            from arlarena_envs.webshop.store import open_store

            if data_dir is not None or human_goals or products_per_type is not None:
                raise InvalidArgumentError("a store holds its products and synthetic goals: build it with `arlarena webshop build-catalogue`, then pass only store=DIR")
            self.catalogue = open_store(store)  # type: ignore[assignment]  # the same interface, on disk
        else:
            raise InvalidArgumentError(f"catalogue must be 'embedded', 'original' or 'store', got {catalogue!r}")
        if store is not None and catalogue != "store":
            raise InvalidArgumentError("store=DIR needs catalogue='store'")
        # splits follow the catalogue's goal count (test: the spec's first goals, train: all others)
        self._splits = derived_splits(len(self.catalogue.goals), self.env_spec.splits["test"].stop if "test" in self.env_spec.splits else 500)
        self._goal: dict[str, Any] = {}
        self._goal_id = 0
        self._reset_state()

    # ------------------------------------------------------------------ state

    def _reset_state(self) -> None:
        self._page = "search"  # search | results | item | sub | done
        self._keywords: list[str] | None = None
        self._results: tuple[int, ...] = ()
        self._page_no = 1
        self._asin: str | None = None
        self._options: dict[str, str] = {}
        self._sub: str | None = None
        self._clicked: set[str] = set()
        self._reward: float | None = None
        self._reward_info: dict[str, Any] = {}
        self._nodes_cache: list[pages.Node] | None = None
        self._clickables_cache: tuple[list[pages.Node], dict[str, tuple[str, str]]] | None = None

    def _check_split(self, split: str) -> SplitSpec:
        spec_split = super()._check_split(split)
        splits = getattr(self, "_splits", None)
        if splits is None:  # still in TextEnv.__init__: the catalogue is not loaded yet
            return spec_split
        if split not in splits:
            raise DataError(
                f"split {split!r} is empty for this catalogue ({len(self.catalogue.goals)} goals; test takes the first "
                f"{splits['test'].size if 'test' in splits else 0}): use split='test' or a larger catalogue"
            )
        return splits[split]

    def _load_task(self, task_id: int, split: str, rng: np.random.Generator) -> None:
        if not 0 <= task_id < len(self.catalogue.goals):
            raise DataError(
                f"goal {task_id} does not exist: this catalogue has {len(self.catalogue.goals)} goals "
                f"(split {split!r} of {self.env_spec.id} assumes the spec's data)"
            )
        self._goal_id = task_id
        self._goal = self.catalogue.goals[task_id]
        self._reset_state()

    # ------------------------------------------------------------------ pages

    def _nodes(self) -> list[pages.Node]:
        if self._nodes_cache is not None:
            return self._nodes_cache
        ins = self._goal["instruction_text"]
        if self._page == "search":
            nodes = pages.search_page(ins)
        elif self._page == "results":
            lo = (self._page_no - 1) * pages.PRODUCT_WINDOW
            prods = [self.catalogue.products[i] for i in self._results[lo : lo + pages.PRODUCT_WINDOW]]
            nodes = pages.results_page(ins, prods, self._page_no, len(self._results))
        elif self._page == "item":
            nodes = pages.item_page(ins, self.catalogue.product(self._asin or ""), self.show_attrs)
        elif self._page == "sub":
            nodes = pages.sub_page(ins, self.catalogue.product(self._asin or ""), self._sub or "")
        else:
            nodes = pages.done_page(self._asin or "", self._options, float(self._reward or 0.0))
        self._nodes_cache = nodes
        return nodes

    def _url(self) -> str:
        kw = "+".join(self._keywords or [])
        if self._page == "item":
            return f"{BASE_URL}/item_page/{self._goal_id}/{self._asin}/{kw}/{self._page_no}/{json.dumps(self._options)}"
        if self._page == "results":
            return f"{BASE_URL}/search_results/{self._goal_id}/{kw}/{self._page_no}"
        if self._page == "sub":
            return f"{BASE_URL}/item_sub_page/{self._goal_id}/{self._asin}/{kw}/{self._page_no}/{self._sub}/{self._options}"
        if self._page == "done":
            return f"{BASE_URL}/done/{self._goal_id}/{self._asin}/{self._options}"
        return f"{BASE_URL}/{self._goal_id}"

    def _clickables(self) -> dict[str, tuple[str, str]]:
        nodes = self._nodes()
        if self._clickables_cache is None or self._clickables_cache[0] is not nodes:
            self._clickables_cache = (nodes, pages.clickables(nodes))
        return self._clickables_cache[1]

    def _has_search_bar(self) -> bool:
        return self._page == "search"

    # ------------------------------------------------------------------ TextEnv hooks

    def _observe(self) -> str:
        nodes = self._nodes()
        if self.observation_mode == "text_rich":
            return pages.render_text_rich(nodes, self._url(), self._clicked)
        return pages.render_text(nodes)

    def _task_description(self) -> str:
        return self._goal["instruction_text"]

    def _admissible_actions(self) -> list[str]:
        if self._page == "done":
            return []
        acts = ["search[<your query>]"] if self._has_search_bar() or (self.search_anywhere and self._page != "search") else []
        acts += [f"click[{c}]" for c in self._clickables() if c != "search"]
        return acts

    def _canonical_action(self, action: str) -> str | None:
        m = _ACTION.match(action)
        if m is None or self._page == "done":
            return None
        verb, arg = m.group(1).lower(), m.group(2)
        if verb == "search":
            if not (self._has_search_bar() or self.search_anywhere) or not arg.strip() or len(arg.strip()) > MAX_QUERY_CHARS:
                return None
            return f"search[{arg.strip()}]"
        key = arg.strip().lower()
        if key == "search" or key not in self._clickables():
            return None
        return f"click[{key}]"

    def _snapshot_state(self) -> Any:
        # shallow copies suffice: _apply rebinds or mutates only these dict/set values
        return {k: (v.copy() if isinstance(v, (dict, set)) else v) for k in _STATE_FIELDS for v in [getattr(self, k)]}

    def _restore_state(self, snapshot: Any) -> None:
        for k, v in snapshot.items():
            setattr(self, k, v)

    def _state_key(self) -> Any:
        return {
            "goal": self._goal_id,
            "page": self._page,
            "keywords": self._keywords,
            "page_no": self._page_no,
            "asin": self._asin,
            "options": list(self._options.items()),
            "sub": self._sub,
            "clicked": sorted(self._clicked),
        }

    def _apply(self, action: str) -> float:
        m = _ACTION.match(action)
        assert m is not None
        verb, arg = m.group(1).lower(), m.group(2).strip()
        if verb == "search":
            self._search(arg.lower().split(" "), 1)
            return 0.0
        key = arg.lower()
        table = self._clickables()
        raw, kind = table[key]
        if key == "buy now":
            return self._buy()
        if key == "back to search":
            self._reset_state()
        elif key == "next >" and self._page == "results":
            self._search(self._keywords or [], self._page_no + 1)
        elif key == "< prev" and self._page == "results":
            self._search(self._keywords or [], self._page_no - 1)
        elif key == "< prev" and self._page == "sub":
            self._goto("item")
        elif key == "< prev" and self._page == "item":
            self._search(self._keywords or [], self._page_no)
        elif key in ("description", "features", "reviews", "attributes"):
            self._sub = key.capitalize()
            self._goto("sub")
        elif kind == "link":
            self._asin = key.upper()
            self._clicked.add(self._asin)
            self._goto("item")
        elif kind == "label":
            product = self.catalogue.product(self._asin or "")
            name = None
            for opt_name, values in product["options"].items():
                if key in values:
                    name = opt_name  # the last option group with this value wins, as the original
            if name is not None:
                self._options[name] = key
            self._goto("item")
        return 0.0

    def _goto(self, page: str) -> None:
        self._page = page
        self._nodes_cache = None

    def _search(self, keywords: list[str], page_no: int) -> None:
        self._keywords = keywords
        self._results = self.catalogue.search(" ".join(keywords))
        self._page_no = page_no
        self._asin, self._options, self._sub = None, {}, None
        self._goto("results")

    def _buy(self) -> float:
        cat = self.catalogue
        product = cat.product(self._asin or "")
        price = cat.prices.get(product["asin"], 100.0)
        score, info = get_reward(
            product,
            self._goal,
            price=price,
            options=self._options,
            p_nouns=cat.nouns(product["name"]),
            g_nouns=cat.nouns(self._goal["name"]),
            mode=self.score_mode,  # type: ignore[arg-type]
        )
        self._reward = float(score)
        self._reward_info = {k: (bool(v) if isinstance(v, (bool, np.bool_)) else float(v)) for k, v in info.items()}
        self._terminated = True
        self._goto("done")
        if self.reward_mode == "score":
            return self._reward
        return SUCCESS_REWARD if self._reward == 1.0 else 0.0

    def _won(self) -> bool:
        return self._reward is not None and self._reward == 1.0

    def _score(self) -> float:
        return float(self._reward or 0.0)

    def _extra_info(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"page": self._page, "goal_index": self._goal_id}
        if self._reward is not None:
            extra.update(self._reward_info)
            extra["purchased_asin"] = self._asin
            extra["purchased_options"] = dict(self._options)
        return extra

    # ------------------------------------------------------------------ the expert

    def target_options(self) -> dict[str, str]:
        """The option values the goal asks for, as (option name -> value) of the target."""
        product = self.catalogue.product(self._goal["asin"])
        goal_opts = self._goal["goal_options"]
        if isinstance(goal_opts, dict):
            return {k: v for k, v in goal_opts.items() if v in product["options"].get(k, ())}
        out: dict[str, str] = {}
        for g in goal_opts:  # human goals: free-text option wishes -> best matching value
            best, best_score = None, 85
            for name, values in product["options"].items():
                for v in values:
                    s = token_set_ratio(v, g)
                    if s > best_score:
                        best, best_score = (name, v), s
            if best is not None:
                out[best[0]] = best[1]
        return out

    def expert_query(self) -> str:
        """The expert's search text: the instruction without its price clause and option names
        (what an agent can read), or the target's title if that query misses the target."""
        text = _PRICE_CLAUSE.sub("", self._goal["instruction_text"])
        opts = self._goal["goal_options"]
        for name in opts if isinstance(opts, dict) else ():
            text = text.replace(f"{name}: ", "")
        query = " ".join(text.lower().replace(",", " ").split())
        target = self.catalogue.by_asin[self._goal["asin"]]
        if query and target in self.catalogue.search(query):
            return query
        return " ".join(self.catalogue.product(self._goal["asin"])["Title"].lower().split())

    def oracle_action(self) -> str | None:
        """The expert's next action: search (see expert_query), page to the target, open it,
        choose the goal's options, buy. None once the episode is over."""
        if self._page == "done":
            return None
        target = self._goal["asin"]
        if self._page == "search":
            return f"search[{self.expert_query()}]"
        if self._page == "results":
            idx = self.catalogue.by_asin[target]
            if idx in self._results:
                pos = self._results.index(idx) // pages.PRODUCT_WINDOW + 1
                if pos == self._page_no:
                    return f"click[{target.lower()}]"
                return "click[next >]" if pos > self._page_no else "click[< prev]"
            return "click[back to search]"
        if self._page == "sub":
            return "click[< prev]"
        if self._asin != target:
            return "click[< prev]"
        for name, value in self.target_options().items():
            if self._options.get(name) != value:
                return f"click[{value}]"
        return "click[buy now]"

    @property
    def goal(self) -> dict[str, Any]:
        return dict(self._goal)

    @property
    def page(self) -> str:
        return self._page
