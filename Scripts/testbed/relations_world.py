"""The shipped testbed's world (Datasets/testbed): villagers, counted relations, wordings, splits.

Built so that the router fails for a *shared* reason that similar questions carry:
- 60 invented villagers and 6 relations (sheep kept, children, boats owned, floors of the
  house, books written, years at sea), all taking a value from ONE shared vocabulary, the
  numbers 1-9; every villager's 6 values are distinct.
- Each question's 3 distractors are the same villager's values under 3 other relations
  (hard negatives): the options alone cannot tell which relation is asked, so the model
  must look the fact up in the right relation's experts.
- Every relation has 4 canonical wordings ("How many sheep does {e} keep?") and 4
  paraphrases in other words ("How big is the woolly flock that {e} herds?"). Training
  teaches the router the relation's expert pair on canonical wordings only, so at test time
  the router is right on canonical questions and wrong, for the same reason, on paraphrases.
- A question text is one (villager, relation, wording). For each (villager, relation), 2
  canonical + 2 paraphrase wordings are in the train partition and the other 4 held out, so
  a held-out question asks a trained fact in a wording never seen for that villager (but
  seen for others): every held-out question has same-wording neighbours.

Everything here is fixed by WORLD_SEED alone, so every draw (any --seed) comes from the same
distribution. Formats: "cloze" (the shipped one: prompt "Question: {q}\\nAnswer:", labels are
the options' own number tokens) and "letter" (OLMES: options A-D listed in the prompt).
"""

import random

WORLD_SEED = 20261201
LETTERS = ["A", "B", "C", "D"]
VALUES = [str(v) for v in range(1, 10)]

SYL_A = ["bar", "cel", "dov", "ema", "fir", "gun", "hal", "ido", "jor", "kav",
         "lon", "mer", "nad", "osk", "pra", "rul", "sev", "tor", "ulm", "vek"]
SYL_B = ["dric", "mon", "tha", "vik", "len", "sto", "bry", "gar", "nel", "pos",
         "rem", "wyn", "zak", "fel", "hin", "kor", "lud", "mar", "quin", "tess"]

# relation -> (canonical wordings, paraphrases)
RELATIONS = [
    ("sheep",
     ["How many sheep does {e} keep?",
      "What is the number of sheep kept by {e}?",
      "{e} keeps how many sheep?",
      "Count the sheep that {e} keeps."],
     ["How big is the woolly flock that {e} herds?",
      "If you counted the animals {e} shears each spring, what total would you get?",
      "The flock grazing behind the hut of {e} is how large?",
      "How many bleating beasts follow {e} to pasture?"]),
    ("children",
     ["How many children does {e} have?",
      "What is the number of children of {e}?",
      "{e} has how many children?",
      "Count the children that {e} has."],
     ["How many little ones call {e} their parent?",
      "At the family table, how many sons and daughters sit with {e}?",
      "How big is the brood that {e} raised?",
      "How many kids did {e} bring into the world?"]),
    ("boats",
     ["How many boats does {e} own?",
      "What is the number of boats owned by {e}?",
      "{e} owns how many boats?",
      "Count the boats that {e} owns."],
     ["How many vessels are moored at the dock of {e}?",
      "If {e} launched every craft of theirs in the harbour, how many would float?",
      "How large is the little fleet belonging to {e}?",
      "How many hulls bob on the water with the name of {e} painted on them?"]),
    ("floors",
     ["How many floors does the house of {e} have?",
      "What is the number of floors in the house of {e}?",
      "The house of {e} has how many floors?",
      "Count the floors in the house of {e}."],
     ["How many storeys tall is the home where {e} lives?",
      "Climbing from the cellar door to the roof of {e}, how many levels do you pass?",
      "How high, in levels, does the dwelling of {e} rise?",
      "On how many levels is the residence of {e} built?"]),
    ("books",
     ["How many books has {e} written?",
      "What is the number of books written by {e}?",
      "{e} has written how many books?",
      "Count the books that {e} has written."],
     ["How many volumes carry the name of {e} as their author?",
      "If you shelved every tale penned by {e}, how many spines would you see?",
      "How long is the list of works that {e} authored?",
      "How many novels came from the quill of {e}?"]),
    ("years_at_sea",
     ["How many years did {e} spend at sea?",
      "What is the number of years {e} spent at sea?",
      "{e} spent how many years at sea?",
      "Count the years that {e} spent at sea."],
     ["For how many winters did {e} sail the ocean?",
      "How long, in summers, was {e} a sailor on the waves?",
      "Before settling ashore, how many seasons had {e} roamed the ocean?",
      "How many voyages around the calendar did {e} make upon the ocean?"]),
]
TASKS = [r[0] for r in RELATIONS]


class World:
    NAME = "relations"
    TASKS = TASKS
    FORMAT = "cloze"

    def __init__(self, n_entities=60, fmt=None):
        self.format = fmt or self.FORMAT
        assert self.format in ("cloze", "letter"), self.format
        rng = random.Random(WORLD_SEED)
        names = set()
        while len(names) < n_entities:
            names.add((rng.choice(SYL_A) + rng.choice(SYL_B)).capitalize())
        self.entities = sorted(names)
        rng.shuffle(self.entities)
        # facts: entity -> relation -> value (a villager's 6 values are distinct)
        self.facts = {e: dict(zip(TASKS, rng.sample(VALUES, len(TASKS)))) for e in self.entities}
        self.questions = []  # dicts: text, entity, task, tmpl, kind, part
        self.by_text = {}
        for e in self.entities:
            for (rel, canon, para) in RELATIONS:
                train_c = rng.sample(range(4), 2)
                train_p = rng.sample(range(4), 2)
                for kind, tmpls, train in (("canonical", canon, train_c), ("paraphrase", para, train_p)):
                    for ti, tmpl in enumerate(tmpls):
                        text = tmpl.format(e=e)
                        q = dict(text=text, entity=e, task=rel, tmpl=ti if kind == "canonical" else 4 + ti,
                                 kind=kind, part="train" if ti in train else "heldout")
                        assert text not in self.by_text, text
                        self.by_text[text] = q
                        self.questions.append(q)

    def make_record(self, q, rng, qid, split):
        e, rel = q["entity"], q["task"]
        answer = self.facts[e][rel]
        # hard negatives: the same villager's values under 3 other relations
        others = [self.facts[e][r] for r in TASKS if r != rel]
        choices = rng.sample(others, 3) + [answer]
        rng.shuffle(choices)
        ai = choices.index(answer)
        if self.format == "letter":
            labels = list(LETTERS)
            prompt = "Question: " + q["text"] + "".join(
                f"\n {LETTERS[i]}. {c}" for i, c in enumerate(choices)) + "\nAnswer:"
        else:
            labels = list(choices)
            prompt = "Question: " + q["text"] + "\nAnswer:"
        return {"id": qid, "task": rel, "split": split, "question": q["text"],
                "choices": choices, "labels": labels, "answer_index": ai, "prompt": prompt}
