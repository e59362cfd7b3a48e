"""The control world (Datasets/testbed-control): domains, facts, question templates, splits.

The first testbed, kept as the control: each domain has its own answer vocabulary, so the
options alone reveal the domain, and the router's errors are idiosyncratic; C3PO is not
expected to help here (see Datasets/testbed-control/README.md).

Everything here is determined by WORLD_SEED alone, so every draw (any --seed) comes from
the same task distribution. Shared by `generate`, `train`, `measure` and `golden`.

Each domain has 8 question templates: 4 "canonical" ones (the domain's plain wording) and
4 "paraphrase" ones (other words for the same question). A question text is one
(item, template) pair of a domain; for every item, 2 canonical + 2 paraphrase templates
belong to the train partition and the other 4 to the held-out partition, so a held-out
question asks a fact the model was trained on, in a wording it never saw for that item.
"""

import random

WORLD_SEED = 20261122
LETTERS = ["A", "B", "C", "D"]

SYL_A = ["zor", "qua", "vel", "mir", "bra", "tol", "kes", "dru", "fen", "gal",
         "hob", "jin", "lum", "nox", "pim", "rav", "sul", "tav", "wex", "yor"]
SYL_B = ["blat", "nix", "dor", "pel", "vun", "rik", "mog", "sta", "lix", "ban",
         "tem", "gor", "wen", "zul", "kai", "fro", "dil", "quo", "sar", "hep"]

# Entity-fact domains: (name, values, canonical templates, paraphrase templates).
FACT_DOMAINS = [
    ("colour",
     ["red", "blue", "green", "yellow", "purple", "orange", "white", "black"],
     ["What colour are the feathers of {e}?",
      "Which colour is the bird {e}?",
      "The bird {e} has feathers of which colour?",
      "What is the feather colour of {e}?"],
     ["What shade is the plumage of {e}?",
      "If you spotted {e} in a tree, what hue would its wings be?",
      "Pick the tint that describes the wings of {e}.",
      "The wings of {e} are painted in what shade?"]),
    ("food",
     ["apples", "fish", "honey", "rice", "cheese", "beans", "bread", "nuts"],
     ["What food does {e} eat?",
      "Which food is eaten by the beast {e}?",
      "The beast {e} eats which food?",
      "What is the favourite food of {e}?"],
     ["What does {e} munch on at dinner time?",
      "If you fed {e}, which meal would it gobble up?",
      "Name the snack that {e} devours.",
      "At supper, {e} chews on what?"]),
    ("city",
     ["Lisbon", "Oslo", "Cairo", "Lima", "Quito", "Dublin", "Prague", "Kyoto"],
     ["In which city does {e} live?",
      "Which city is the home of {e}?",
      "The merchant {e} lives in which city?",
      "What city does {e} live in?"],
     ["Where has {e} settled down?",
      "If you posted a letter to {e}, which town would it go to?",
      "Name the place that {e} calls home.",
      "{e} resides in what place?"]),
    ("metal",
     ["iron", "copper", "silver", "gold", "tin", "lead", "zinc", "nickel"],
     ["Which metal is the crown of {e} made of?",
      "What metal is used for the crown of {e}?",
      "The crown of {e} is made of which metal?",
      "Of what metal is the crown of {e} made?"],
     ["What was smelted to forge the diadem worn by {e}?",
      "If you melted the diadem of {e}, what would you get?",
      "Name the ore from which the diadem of {e} was cast.",
      "The diadem on the head of {e} was forged from what?"]),
    ("job",
     ["baker", "farmer", "tailor", "sailor", "miner", "potter", "weaver", "smith"],
     ["What is the job of {e}?",
      "Which job does the villager {e} have?",
      "The villager {e} works as which job?",
      "What job does {e} do?"],
     ["How does {e} earn a living?",
      "If you visited {e} at work, what trade would you see?",
      "Name the craft practised by {e}.",
      "{e} makes money as what?"]),
]

ARITH_CANON = ["What is {a} plus {b}?",
               "What is the sum of {a} and {b}?",
               "Add {a} and {b}. What is the result?",
               "What do you get when you add {a} and {b}?"]
ARITH_PARA = ["If you have {a} pebbles and find {b} more, how many do you hold?",
              "{a} birds sit on a wire and {b} join them. How many now?",
              "Combine {a} and {b}: what total results?",
              "A basket holds {a} eggs; {b} are put in. Count them."]

UNITS = [("metres", "centimetres", 100), ("kilograms", "grams", 1000),
         ("hours", "minutes", 60), ("days", "hours", 24),
         ("feet", "inches", 12), ("weeks", "days", 7)]
UNIT_CANON = ["How many {t} are in {n} {f}?",
              "Convert {n} {f} to {t}.",
              "What is {n} {f} in {t}?",
              "{n} {f} equals how many {t}?"]
UNIT_PARA = ["A task lasting {n} {f} takes how many {t}?",
             "Someone measured {n} {f}; expressed in {t}, that is?",
             "Rewrite {n} {f} using {t} instead.",
             "If a rope is {n} {f} long, give that in {t}."]

CATEGORIES = {
    "fruit": ["apple", "plum", "mango", "pear", "cherry", "peach"],
    "tool": ["hammer", "saw", "wrench", "chisel", "drill", "shovel"],
    "animal": ["tiger", "rabbit", "horse", "camel", "otter", "wolf"],
    "vehicle": ["truck", "bicycle", "canoe", "tram", "scooter", "wagon"],
    "furniture": ["sofa", "wardrobe", "stool", "bench", "dresser", "desk"],
    "clothing": ["jacket", "scarf", "sweater", "glove", "sock", "skirt"],
    "instrument": ["violin", "flute", "trumpet", "harp", "cello", "banjo"],
    "vegetable": ["carrot", "onion", "cabbage", "turnip", "leek", "radish"],
}
CAT_CANON = ["What kind of thing is a {x}?",
             "Which category does a {x} belong to?",
             "A {x} is an example of which category?",
             "What category is a {x} in?"]
CAT_PARA = ["Someone hands you a {x}; what have you got?",
            "Sort the {x} into the right bin: which one?",
            "If a {x} were on a shopping list, what section would it be under?",
            "Name the family of things that includes the {x}."]

DOMAINS = [d[0] for d in FACT_DOMAINS] + ["arithmetic", "units", "category"]


class World:
    NAME = "control"
    TASKS = DOMAINS
    FORMAT = "letter"

    def __init__(self, n_entities=40):
        rng = random.Random(WORLD_SEED)
        names = set()
        while len(names) < n_entities:
            names.add((rng.choice(SYL_A) + rng.choice(SYL_B)).capitalize())
        self.entities = sorted(names)
        rng.shuffle(self.entities)
        # items: list of dicts {domain, key, values(answer pool), answer, fill}
        self.items = []
        for (dom, values, canon, para) in FACT_DOMAINS:
            for e in self.entities:
                self.items.append(dict(domain=dom, key=e, pool=values,
                                       answer=rng.choice(values), fill={"e": e},
                                       templates=canon + para))
        for a in range(1, 10):
            for b in range(1, 10):
                self.items.append(dict(domain="arithmetic", key=f"{a}+{b}",
                                       pool=[str(s) for s in range(2, 19)], answer=str(a + b),
                                       fill={"a": a, "b": b}, templates=ARITH_CANON + ARITH_PARA))
        for (f, t, k) in UNITS:
            for n in range(1, 10):
                self.items.append(dict(domain="units", key=f"{n} {f}",
                                       pool=[str(m * k) for m in range(1, 10)], answer=str(n * k),
                                       fill={"n": n, "f": f, "t": t}, templates=UNIT_CANON + UNIT_PARA))
        cats = list(CATEGORIES)
        for c, xs in CATEGORIES.items():
            for x in xs:
                self.items.append(dict(domain="category", key=x, pool=cats, answer=c,
                                       fill={"x": x}, templates=CAT_CANON + CAT_PARA))
        # questions: (item index, template index) -> text; partition into train / held-out
        self.questions = []  # dicts: text, item, tmpl, kind, part
        self.by_text = {}
        for ii, it in enumerate(self.items):
            train_c = rng.sample(range(4), 2)
            train_p = rng.sample(range(4, 8), 2)
            for ti, tmpl in enumerate(it["templates"]):
                text = tmpl.format(**it["fill"])
                text = text[0].upper() + text[1:]
                q = dict(text=text, item=ii, tmpl=ti, kind="canonical" if ti < 4 else "paraphrase",
                         part="train" if ti in train_c or ti in train_p else "heldout")
                assert text not in self.by_text, text
                self.by_text[text] = q
                self.questions.append(q)

    def domain_index(self, domain):
        return DOMAINS.index(domain)

    def make_record(self, q, rng, qid, split):
        it = self.items[q["item"]]
        pool = [v for v in it["pool"] if v != it["answer"]]
        if it["domain"] == "arithmetic":
            s = int(it["answer"])  # near misses make the options informative
            near = [str(v) for v in range(max(2, s - 4), min(18, s + 4) + 1) if v != s]
            distract = rng.sample(near, 3)
        else:
            distract = rng.sample(pool, 3)
        choices = distract + [it["answer"]]
        rng.shuffle(choices)
        ai = choices.index(it["answer"])
        prompt = "Question: " + q["text"] + "".join(
            f"\n {LETTERS[i]}. {c}" for i, c in enumerate(choices)) + "\nAnswer:"
        return {"id": qid, "task": it["domain"], "split": split, "question": q["text"],
                "choices": choices, "labels": list(LETTERS), "answer_index": ai, "prompt": prompt}
