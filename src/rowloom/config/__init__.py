"""WHAT to generate: pydantic models only, no I/O beyond reading and writing config files."""

from rowloom.config.columns import (
    BernoulliSampler,
    CategorySampler,
    ColumnConfig,
    CustomColumn,
    DatetimeSampler,
    ExpressionColumn,
    GaussianSampler,
    LLMJudgeColumn,
    LLMStructuredColumn,
    LLMTextColumn,
    Rubric,
    SubcategorySampler,
    UniformSampler,
    UUIDSampler,
)
from rowloom.config.dataset import DatasetConfig
from rowloom.config.models import InferenceParams, ModelConfig, ProviderConfig
from rowloom.config.run import RunConfig
from rowloom.config.scheduling import ResourceClass, SchedulingMetadata

__all__ = [
    "BernoulliSampler",
    "CategorySampler",
    "ColumnConfig",
    "CustomColumn",
    "DatasetConfig",
    "DatetimeSampler",
    "ExpressionColumn",
    "GaussianSampler",
    "InferenceParams",
    "LLMJudgeColumn",
    "LLMStructuredColumn",
    "LLMTextColumn",
    "ModelConfig",
    "ProviderConfig",
    "ResourceClass",
    "Rubric",
    "RunConfig",
    "SchedulingMetadata",
    "SubcategorySampler",
    "UUIDSampler",
    "UniformSampler",
]
