"""``facefix plugins``: what is installed, and what each plugin provides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from facefix import plugins
from facefix.components import KINDS
from facefix.errors import FacefixError


def _card_summary(card: Any) -> dict[str, Any]:
    return {
        "name": card.name, "kind": card.kind, "title": card.title, "description": card.description,
        "tags": [variant.tag for variant in card.variants],
        "default_tag": card.default_variant.tag if card.default_variant else None,
        "exportable": card.exportable, "train_command": card.train_command, "precisions": list(card.precisions),
        "rank": card.rank,
    }


@click.command(name="plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), envvar="FACEFIX_MODEL_DIR",
              help="Folder of weights files to look in (as for restore).")
def plugins_command(as_json: bool, model_dir: Path | None) -> None:
    """List installed plugins, the networks they declare and the components they register."""
    from facefix.weights import WeightsResolver, get_entry

    resolver = WeightsResolver(model_dir=model_dir, allow_download=False, progress=False)

    def weights_status(names: tuple[str, ...]) -> str:
        if not names:
            return "none needed"
        statuses = []
        for name in names:
            try:
                statuses.append(resolver.status(get_entry(name)))
            except FacefixError:
                statuses.append("missing")
        for status in ("missing", "downloadable", "available"):
            if status in statuses:
                return status
        return statuses[0]

    def licenses(names: tuple[str, ...]) -> list[str]:
        found = []
        for name in names:
            try:
                license_text = get_entry(name).license
            except FacefixError:
                continue
            if license_text and license_text not in found:
                found.append(license_text)
        return found

    listing = {
        "plugins": [
            {"name": info.name, "builtin": info.builtin, "distribution": info.distribution, "hooks": list(info.hooks)}
            for info in plugins.plugin_infos()
        ],
        "networks": [dict(_card_summary(card), plugin=plugin) for plugin, card in plugins.card_registrations()],
        "components": {
            kind: [
                {
                    "name": spec.name,
                    "plugin": spec.plugin,
                    "description": spec.description,
                    "weights": list(spec.weights),
                    # a network without released weights runs from the user's own file
                    "weights_status": ("needs --weights" if spec.card is not None and not spec.card.variants
                                       else weights_status(spec.weights)),
                    "licenses": licenses(spec.weights),
                    "network": spec.card.name if spec.card is not None else None,
                    "tag": spec.tag,
                    "aliases": list(spec.aliases),
                    "rank": spec.rank,
                }
                for spec in sorted(plugins.components(kind).values(), key=lambda spec: spec.name)
            ]
            for kind in KINDS
        },
    }
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    click.echo("Plugins:")
    for info in listing["plugins"]:
        origin = "built-in" if info["builtin"] else (info["distribution"] or "registered at run time")
        click.echo(f"  {info['name']} ({origin}): {', '.join(info['hooks'])}")
    click.echo("\nNetworks:")
    for card in listing["networks"]:
        commands = [f"train {card['train_command']}"] if card["train_command"] else []
        commands += [f"export {card['name']}"] if card["exportable"] and card["kind"] in ("restorer", "upsampler") else []
        tags = ", ".join(card["tags"]) or "no released weights"
        click.echo(f"  {card['kind']} {card['name']:<16} tags: {tags}; {'; '.join(commands) or 'no commands'}")
    for kind in KINDS:
        click.echo(f"\n{kind.capitalize()}s:")
        for item in listing["components"][kind]:
            also = f" (also {', '.join(item['aliases'])})" if item["aliases"] else ""
            license_note = f" licence: {'; '.join(item['licenses'])}." if item["licenses"] else ""
            click.echo(f"  {item['name']:<24} {item['plugin']:<18} [{item['weights_status']}] {item['description']}{also}"
                       f"{license_note}")
