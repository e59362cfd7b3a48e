"""The testbed worlds by name: `relations` (Datasets/testbed, the shipped one) and
`control` (Datasets/testbed-control, the first testbed, kept as the control)."""
import control_world
import relations_world

WORLDS = {"relations": relations_world.World, "control": control_world.World}
DEFAULT_DATA = {"relations": "Datasets/testbed", "control": "Datasets/testbed-control"}


def load_world(name, fmt=None):
    if name not in WORLDS:
        raise SystemExit(f"unknown world '{name}' (known: {', '.join(WORLDS)})")
    cls = WORLDS[name]
    return cls(fmt=fmt) if name == "relations" else cls()


def world_of_data(data_dir):
    """The world a data folder was made from (its model's testbed_training.json says; the
    control folder predates that field)."""
    import json, os
    meta = os.path.join(data_dir, "model", "testbed_training.json")
    if os.path.exists(meta):
        args = json.load(open(meta)).get("args", {})
        return load_world(args.get("world", "control"), args.get("format"))
    return load_world("relations")
