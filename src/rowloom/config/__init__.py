"""WHAT to generate: pydantic models only, no I/O beyond reading and writing config files."""

from rowloom.config.columns import (
    BernoulliSampler,
    CategorySampler,
    CodeValidation,
    ColumnConfig,
    CustomColumn,
    DatetimeSampler,
    EmbeddingColumn,
    ExpressionColumn,
    GaussianSampler,
    LLMCodeColumn,
    LLMJudgeColumn,
    LLMStructuredColumn,
    LLMTextColumn,
    Rubric,
    SubcategorySampler,
    UniformSampler,
    UUIDSampler,
    ValidationColumn,
)
from rowloom.config.dataset import DatasetConfig
from rowloom.config.models import InferenceParams, ModelConfig, ProviderConfig
from rowloom.config.processors import (
    DropColumnsProcessor,
    ExportConfig,
    RenameColumnsProcessor,
    SchemaTransformProcessor,
)
from rowloom.config.run import RunConfig
from rowloom.config.scheduling import ResourceClass, SchedulingMetadata
from rowloom.config.seed import SeedConfig, SeedPartition

__all__ = [
    "BernoulliSampler",
    "CategorySampler",
    "CodeValidation",
    "ColumnConfig",
    "CustomColumn",
    "DatasetConfig",
    "DatetimeSampler",
    "DropColumnsProcessor",
    "EmbeddingColumn",
    "ExportConfig",
    "ExpressionColumn",
    "GaussianSampler",
    "InferenceParams",
    "LLMCodeColumn",
    "LLMJudgeColumn",
    "LLMStructuredColumn",
    "LLMTextColumn",
    "ModelConfig",
    "ProviderConfig",
    "RenameColumnsProcessor",
    "ResourceClass",
    "Rubric",
    "RunConfig",
    "SchedulingMetadata",
    "SchemaTransformProcessor",
    "SeedConfig",
    "SeedPartition",
    "SubcategorySampler",
    "UUIDSampler",
    "UniformSampler",
    "ValidationColumn",
]
