"""What a client can ask for: target languages and allow-listed models."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CurrentTenant, SettingsDep
from api.errors import COMMON_ERRORS
from clo.languages import PAPER_LANGUAGES, all_languages, trainable_recommendation

router = APIRouter(prefix="/v1", tags=["catalogue"], responses=COMMON_ERRORS)


class LanguageRead(BaseModel):
    code: str
    name: str
    script: str
    resource: str
    recommended_trainable: str
    recommendation: str
    in_paper: bool


class ModelRead(BaseModel):
    name: str
    kind: str
    source: str | None = None
    revision: str | None = None
    description: str = ""


@router.get("/languages", response_model=list[LanguageRead])
def list_languages(_tenant: CurrentTenant) -> list[LanguageRead]:
    out = []
    for lang in all_languages():
        trainable, why = trainable_recommendation(lang.code)
        out.append(
            LanguageRead(
                code=lang.code,
                name=lang.name,
                script=lang.script,
                resource=lang.resource,
                recommended_trainable=trainable,
                recommendation=why,
                in_paper=lang.code in PAPER_LANGUAGES,
            )
        )
    return out


@router.get("/models", response_model=list[ModelRead])
def list_models(_tenant: CurrentTenant, settings: SettingsDep) -> list[ModelRead]:
    """The allow-list; local folders are named but their paths are not disclosed."""
    return [
        ModelRead(
            name=name,
            kind=entry.kind,
            source=None if entry.is_local else entry.source,
            revision=entry.revision,
            description=entry.description,
        )
        for name, entry in sorted(settings.allowed_models().items())
    ]
