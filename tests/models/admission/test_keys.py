"""Resource keys are interned values: one object per (provider, model, domain) in a process, however made."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import pytest

from rowloom.models.admission.keys import ResourceKey


def test_a_key_of_the_same_fields_is_the_same_object_however_it_was_made():
    key = ResourceKey("p", "m")
    assert ResourceKey("p", "m", "chat") is key
    assert pickle.loads(pickle.dumps(key)) is key  # a key sent to a Ray worker and back
    assert copy.copy(key) is key and copy.deepcopy({key: 1}) == {key: 1}
    assert {key: "a"}[ResourceKey("p", "m")] == "a"


def test_keys_of_other_fields_differ_and_say_which_they_are():
    chat, embeddings, other = ResourceKey("p", "m"), ResourceKey("p", "m", "embeddings"), ResourceKey("q", "m")
    assert len({chat, embeddings, other}) == 3 and chat != embeddings
    assert (chat.label, embeddings.label) == ("p/m", "p/m [embeddings]")
    assert repr(other) == "ResourceKey(provider='q', model='m', domain='chat')"


def test_a_key_cannot_be_changed():
    key = ResourceKey("p", "m")
    with pytest.raises(AttributeError, match="immutable"):
        key.model = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del key.label


def test_a_key_pickled_in_another_process_is_this_processs_key():
    """String hashes differ between processes: a key made elsewhere must still find this process's state."""
    code = "import pickle, sys; from rowloom.models.admission.keys import ResourceKey; "
    code += "sys.stdout.buffer.write(pickle.dumps(ResourceKey('p', 'm')))"
    pickled = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    assert pickle.loads(pickled) is ResourceKey("p", "m")
