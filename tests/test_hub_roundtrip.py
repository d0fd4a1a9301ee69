"""Hub round trips against the local mock Hub: trained models and the dataset, loaded back in fresh processes."""

import json
from pathlib import Path

import pytest
from support.umbert_testing import UmBertModelTester
from transformers import AutoModel

from dataset_builder import push_to_hub as push_dataset_to_hub

ROOT = Path(__file__).resolve().parents[1]

LOAD_AND_COMPLETE = """
import json, sys
from transformers import AutoModel
model = AutoModel.from_pretrained({repo!r}, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
print(json.dumps(model.complete(json.loads({outfits!r}), top_k=5)))
"""


@pytest.mark.slow
def test_trained_umbert_pushed_by_the_script_loads_without_the_package(hub_env, outfit_dataset, tmp_path):
    dataset, embeddings = outfit_dataset
    repo_id = hub_env.unique_repo_id("umbert")
    output = tmp_path / "model"
    hub_env.run(
        "import runpy, sys\n"
        f"sys.argv = {['pretrain.py', '--dataset', str(dataset), '--embeddings', str(embeddings), '--output_dir', str(output), '--num_train_epochs', '1', '--num_hidden_layers', '1', '--num_attention_heads', '2', '--push_to_hub', '--hub_model_id', repo_id]!r}\n"
        f"runpy.run_path({str(ROOT / 'training_scripts' / 'pretrain.py')!r}, run_name='__main__')\n",
        cwd=ROOT,
        share_cache=True,
    )
    files = set(hub_env.api.list_repo_files(repo_id))
    assert {"config.json", "model.safetensors", "README.md", "modeling_umbert.py", "metrics.json"} <= files
    assert not any(name.startswith(("epoch_", "step_")) for name in files)
    local = AutoModel.from_pretrained(output).eval()
    import datasets

    row = datasets.load_dataset(str(dataset), "outfits")["test"][0]
    outfits = [{slot: (None if slot == "shoes" else row[slot]) for slot in local.config.categories}]
    remote = hub_env.run_json(
        LOAD_AND_COMPLETE.format(repo=repo_id, outfits=json.dumps(outfits)), block_imports=["umbert_hf"]
    )
    assert remote == json.loads(json.dumps(local.complete(outfits, top_k=5)))


@pytest.mark.slow
def test_wumbert_push_to_hub_and_remote_code_load(hub_env):
    tester = UmBertModelTester()
    model = tester.wumbert()
    repo_id = hub_env.unique_repo_id("wumbert")
    model.push_to_hub(repo_id)
    outfits = [tester.outfit_dict(tester.outfit_rows(1)[0].tolist(), blank=3)]
    remote = hub_env.run_json(
        LOAD_AND_COMPLETE.format(repo=repo_id, outfits=json.dumps(outfits)), block_imports=["umbert_hf"]
    )
    assert remote == json.loads(json.dumps(model.complete(outfits, top_k=5)))


@pytest.mark.slow
def test_dataset_pushed_and_loaded_back_with_load_dataset(hub_env, outfit_dataset):
    dataset, _ = outfit_dataset
    repo_id = hub_env.unique_repo_id("polyvore")
    push_dataset_to_hub(dataset, repo_id)
    import datasets

    local = datasets.load_dataset(str(dataset), "outfits")
    remote = hub_env.run_json(
        "import json, datasets\n"
        f"splits = datasets.load_dataset({repo_id!r}, 'outfits')\n"
        "print(json.dumps({name: split.to_dict() for name, split in splits.items()}))\n",
        block_imports=["umbert_hf"],
    )
    assert remote == {name: split.to_dict() for name, split in local.items()}
