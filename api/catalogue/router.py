"""What a client can ask for: target languages and allow-listed models."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.catalogue import service
from api.catalogue.service import ModelList, ModelRead
from api.deps import CurrentTenant, SessionDep, SettingsDep
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


@router.get("/models", response_model=ModelList)
def list_models(tenant: CurrentTenant, session: SessionDep, settings: SettingsDep) -> ModelList:
    """The allow-list, then the tenant's fine-tuned models (succeeded jobs), newest first."""
    return service.list_models(session, tenant, settings)


@router.get("/models/{model_id:path}", response_model=ModelRead)
def get_model(
    model_id: str, tenant: CurrentTenant, session: SessionDep, settings: SettingsDep
) -> ModelRead:
    """One allow-listed model, or a fine-tuned one by its `ft:` name (a job's fine_tuned_model)."""
    return service.get_model(session, tenant, settings, model_id)
