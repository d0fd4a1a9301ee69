"""umBERT and WumBERT: shapes, masking, losses, catalogue persistence, Auto classes, remote code and errors."""

import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch
from support.umbert_testing import UmBertModelTester
from transformers import AutoConfig, AutoModel

from umbert_hf import UmBertConfig, UmBertModel, WumBertConfig, WumBertModel, expand_fill_in_the_blank
from umbert_hf.modeling_umbert import contrastive_loss


@pytest.fixture
def tester():
    return UmBertModelTester()


# ----- config -------------------------------------------------------------------------------------------------


def test_config_defaults_are_faithful_to_the_original():
    config = UmBertConfig()
    assert config.categories == ["shoes", "tops", "accessories", "bottoms"]
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (128, 6, 8)
    assert config.intermediate_size == 512 and config.decoder_hidden_size == 256
    assert config.loss_type == "contrastive"
    assert UmBertConfig(hidden_size=64).intermediate_size == 256


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 30, "num_attention_heads": 4}, "multiple of `num_attention_heads`"),
        ({"loss_type": "l1"}, "Unknown `loss_type` 'l1'"),
        ({"distance": "manhattan"}, "Unknown `distance` 'manhattan'"),
        ({"categories": []}, "at least one slot"),
        ({"categories": ["tops", "shoes", "tops"]}, "duplicates \\['tops'\\]"),
        ({"contrastive_temperature": 0.0}, "contrastive_temperature"),
    ],
)
def test_invalid_config_raises_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UmBertConfig(**kwargs)
    with pytest.raises(ValueError, match=message):
        WumBertConfig(**kwargs)


# ----- forward ------------------------------------------------------------------------------------------------


def test_forward_shapes(tester):
    model = tester.umbert()
    inputs = torch.randn(tester.batch_size, 4, tester.hidden_size)
    output = model(inputs_embeds=inputs)
    assert output.loss is None
    assert output.reconstructions.shape == (tester.batch_size, 4, tester.hidden_size)
    assert output.last_hidden_state.shape == (tester.batch_size, 4, tester.hidden_size)
    assert output.masked_predictions is None
    masked = model(inputs_embeds=inputs, masked_positions=torch.zeros(tester.batch_size, dtype=torch.long))
    assert masked.masked_predictions.shape == (tester.batch_size, tester.hidden_size)
    assert torch.equal(masked.masked_predictions, masked.reconstructions[:, 0])


def test_fill_in_the_blank_expansion_masks_exactly_one_slot_per_copy():
    outfits = torch.arange(3 * 4 * 2, dtype=torch.float32).reshape(3, 4, 2)
    expanded, masked_positions = expand_fill_in_the_blank(outfits)
    assert expanded.shape == (12, 4, 2)
    assert masked_positions.tolist() == [0, 1, 2, 3] * 3
    for row in range(12):
        assert torch.equal(expanded[row], outfits[row // 4])
    ids, positions = expand_fill_in_the_blank(torch.tensor([[5, 6, 7, 8]]))
    assert ids.tolist() == [[5, 6, 7, 8]] * 4 and positions.tolist() == [0, 1, 2, 3]


def test_masked_slot_receives_its_category_mask_token(tester):
    model = tester.umbert()
    captured = {}
    handle = model.encoder.layers.register_forward_pre_hook(lambda module, args: captured.update(x=args[0]))
    inputs = torch.randn(8, 4, tester.hidden_size)
    expanded, masked_positions = expand_fill_in_the_blank(inputs)
    model(inputs_embeds=expanded, masked_positions=masked_positions)
    handle.remove()
    encoder_input = captured["x"]
    for row, slot in enumerate(masked_positions.tolist()):
        assert torch.equal(encoder_input[row, slot], model.encoder.mask_embeddings[slot])
        others = [position for position in range(4) if position != slot]
        assert torch.allclose(encoder_input[row, others], model.standardize(expanded[row, others]))


def test_category_embeddings_are_added_to_every_slot():
    model = UmBertModelTester(use_category_embeddings=True).umbert()
    captured = {}
    model.encoder.layers.register_forward_pre_hook(lambda module, args: captured.update(x=args[0]))
    inputs = torch.randn(2, 4, 32)
    model(inputs_embeds=inputs)
    assert torch.allclose(captured["x"], model.standardize(inputs) + model.encoder.category_embeddings.weight)


@pytest.mark.parametrize("loss_type", ["mse", "contrastive", "mse+contrastive"])
@pytest.mark.slow
def test_loss_is_finite_with_gradients_and_decreases_when_overfitting(loss_type):
    tester = UmBertModelTester(loss_type=loss_type)
    model = tester.umbert().train()
    outfits = tester.item_embeddings[tester.outfit_rows(16)]
    expanded, masked_positions = expand_fill_in_the_blank(outfits)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model(inputs_embeds=expanded, masked_positions=masked_positions, labels=expanded).loss
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        assert model.encoder.mask_embeddings.grad.abs().sum() > 0
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_mse_loss_is_the_mean_squared_error_over_all_slots(tester):
    model = UmBertModelTester(loss_type="mse").umbert()
    inputs = torch.randn(5, 4, 32)
    labels = torch.randn(5, 4, 32)
    output = model(inputs_embeds=inputs, labels=labels)
    # Computed in the standardised space: differences divided by the catalogue's overall spread.
    scale = tester.item_embeddings.sub(tester.item_embeddings.mean(0)).pow(2).mean().sqrt()
    assert torch.allclose(output.loss, (((output.reconstructions - labels) / scale) ** 2).mean(), rtol=1e-4)


def test_standardisation_uses_catalogue_statistics_and_can_be_disabled(tester):
    model = tester.umbert()
    assert torch.allclose(model.embedding_mean, tester.item_embeddings.mean(0))
    assert torch.allclose(model.standardize(tester.item_embeddings).pow(2).mean(), torch.tensor(1.0), atol=1e-5)
    plain = UmBertModelTester(standardize_embeddings=False).umbert()
    assert torch.equal(plain.embedding_mean, torch.zeros(32)) and torch.equal(plain.embedding_scale, torch.ones(1))


def test_contrastive_loss_matches_a_direct_computation():
    torch.manual_seed(0)
    predictions, targets = torch.randn(6, 8), torch.randn(6, 8)
    targets[4] = targets[1]  # the same item in two outfits of the same category: not a negative
    categories = torch.tensor([0, 0, 1, 1, 0, 0])
    scale = torch.tensor(0.0)  # temperature 1
    loss = contrastive_loss(predictions, targets, categories, scale, "cosine")
    cosine = torch.nn.functional.cosine_similarity(predictions[:, None], targets[None], dim=-1)
    expected = []
    for row in range(6):
        candidates = [
            col for col in range(6) if categories[col] == categories[row] and (col == row or {row, col} != {1, 4})
        ]
        logits = cosine[row, candidates]
        expected.append(-torch.log_softmax(logits, 0)[candidates.index(row)])
    assert torch.allclose(loss, torch.stack(expected).mean(), atol=1e-5)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_contrastive_logits_are_on_an_infonce_scale_whatever_the_dimension_and_spread(distance):
    """An untrained model's InfoNCE loss stays near ln(candidates): the logits do not saturate in 384-d, large spread."""
    losses = {}
    for hidden_size, spread in ((16, 1.0), (384, 1.0), (384, 50.0)):
        torch.manual_seed(0)
        offset = torch.randn(hidden_size)  # predictions and targets live in the same (standardised) space
        predictions = offset + spread * torch.randn(64, hidden_size)
        targets = offset + spread * torch.randn(64, hidden_size)
        scale = torch.tensor(math.log(1 / 0.05))
        losses[hidden_size, spread] = contrastive_loss(predictions, targets, torch.zeros(64), scale, distance).item()
    # Low dimensions spread random distances more (chi-square), hence a looser bound; never thousands, as before.
    assert math.log(64) - 2 < losses[384, 1.0] < math.log(64) + 1.5, losses
    assert losses[16, 1.0] < 4 * math.log(64), losses
    if distance == "euclidean":
        assert losses[384, 1.0] == pytest.approx(losses[384, 50.0], rel=1e-3)  # invariant to the spread


# ----- WumBERT ------------------------------------------------------------------------------------------------


def test_wumbert_input_ids_and_inputs_embeds_agree(tester):
    model = tester.wumbert()
    rows = tester.outfit_rows()
    masked_positions = torch.randint(4, (tester.batch_size,))
    by_ids = model(input_ids=rows, masked_positions=masked_positions)
    by_embeds = model(inputs_embeds=model.item_embeddings(rows), masked_positions=masked_positions)
    assert torch.allclose(by_ids.reconstructions, by_embeds.reconstructions)
    assert torch.equal(model.item_embeddings.weight, tester.item_embeddings)
    with pytest.raises(ValueError, match="exactly one of `input_ids` and `inputs_embeds`"):
        model(input_ids=rows, inputs_embeds=model.item_embeddings(rows))


def test_wumbert_table_trains_and_labels_may_be_ids(tester):
    model = tester.wumbert().train()
    expanded, masked_positions = expand_fill_in_the_blank(tester.outfit_rows())
    loss = model(input_ids=expanded, masked_positions=masked_positions, labels=expanded).loss
    loss.backward()
    assert model.item_embeddings.weight.grad.abs().sum() > 0


def test_umbert_and_wumbert_give_the_same_outputs_from_the_same_weights(tester):
    umbert, wumbert = tester.umbert(), tester.wumbert()
    wumbert.encoder.load_state_dict(umbert.encoder.state_dict())
    rows = tester.outfit_rows()
    assert torch.allclose(
        umbert(inputs_embeds=tester.item_embeddings[rows]).reconstructions,
        wumbert(input_ids=rows).reconstructions,
        atol=1e-6,
    )


@pytest.mark.parametrize("build", ["umbert", "wumbert"])
def test_forward_refuses_unknown_arguments(tester, build):
    """A misspelt argument must fail loudly, not be silently ignored (the outfit would go unmasked)."""
    model = getattr(tester, build)()
    inputs = tester.item_embeddings[tester.outfit_rows(2)]
    with pytest.raises(TypeError, match="unexpected keyword argument 'masked_position'"):
        model(inputs_embeds=inputs, masked_position=torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="unexpected keyword argument 'return_dict'"):
        model(inputs_embeds=inputs, return_dict=False)
    assert model(inputs_embeds=inputs, masked_positions=torch.tensor([0, 1]), labels=inputs).loss is not None


def test_catalogue_index_is_cached_and_follows_the_item_table(tester):
    model = tester.wumbert()
    index = model.catalogue_index()
    assert model.catalogue_index() is index
    assert model.catalogue_rows_of_category("tops").tolist() == tester.rows_of("tops")
    query = model.item_embeddings.weight[[3]].detach() + 100.0
    before = model.retrieve(query, torch.tensor([3]), 1)[1]
    with torch.no_grad():
        model.item_embeddings.weight[7] += 100.0  # row 7 is a bottom: now the nearest to the query
    assert model.catalogue_index() is not index
    assert model.retrieve(query, torch.tensor([3]), 1)[1].item() == 7 != before.item()


# ----- completion ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", ["umbert", "wumbert"])
def test_complete_returns_top_k_items_of_the_blank_category_best_first(tester, build):
    model = getattr(tester, build)()
    rows = tester.outfit_rows(3).tolist()
    outfits = [tester.outfit_dict(rows[0], blank=2), tester.outfit_dict(rows[1], blank=0)]
    results = model.complete(outfits, top_k=5)
    assert len(results) == 2 and all(len(result) == 5 for result in results)
    for result, blank in zip(results, [2, 0]):
        allowed = {tester.item_ids[row] for row in tester.rows_of(tester.categories[blank])}
        assert {entry["item_id"] for entry in result} <= allowed
        scores = [entry["score"] for entry in result]
        assert scores == sorted(scores, reverse=True)
        assert all(isinstance(entry["item_id"], str) and isinstance(entry["score"], float) for entry in result)
    # Same answer as predicting the masked slot by hand and brute-force ranking with cdist.
    inputs = tester.item_embeddings[torch.tensor(rows[0])].unsqueeze(0)
    prediction = model(inputs_embeds=inputs, masked_positions=torch.tensor([2])).masked_predictions
    candidates = tester.rows_of("accessories")
    distances = torch.cdist(prediction, model.get_catalogue_embeddings()[candidates])[0]
    expected = [tester.item_ids[candidates[index]] for index in distances.argsort()[:5]]
    assert [entry["item_id"] for entry in results[0]] == expected
    assert results[0][0]["score"] == pytest.approx(-distances.min().item(), abs=1e-4)


@pytest.mark.parametrize(
    ("outfit", "message"),
    [
        ({"shoes": "100000", "tops": "999", "accessories": None, "bottoms": "100003"}, "unknown item id '999'"),
        ({"shoes": "100000", "hats": "100001", "accessories": None, "bottoms": "100003"}, "unknown slot 'hats'"),
        ({"shoes": "100000", "tops": "100001", "accessories": "100002", "bottoms": "100003"}, "got 0"),
        ({"shoes": None, "tops": None, "accessories": "100002", "bottoms": "100003"}, "got 2"),
        ({"shoes": "100000", "accessories": None, "bottoms": "100003"}, "slot 'tops' is missing"),
        ({"shoes": torch.zeros(7), "tops": "100001", "accessories": None, "bottoms": "100003"}, "shape \\(32,\\)"),
    ],
)
def test_complete_errors_name_the_offending_value(tester, outfit, message):
    with pytest.raises(ValueError, match=message):
        tester.umbert().complete([outfit])


def test_an_item_of_another_category_is_refused_naming_outfit_slot_item_and_category(tester):
    model = tester.umbert()
    good = tester.outfit_dict(tester.outfit_rows(1)[0].tolist(), blank=0)
    shoe = tester.item_ids[tester.rows_of("shoes")[0]]
    wrong = {**good, "tops": shoe}
    with pytest.raises(ValueError, match=f"Outfit 1, slot 'tops': item '{shoe}' is of category 'shoes'"):
        model.complete([good, wrong])
    # The same outfit with every item in its own slot completes.
    assert len(model.complete([good])[0]) == 10


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_infinite_embeddings_are_refused(tester, bad):
    model = tester.umbert()
    outfit = tester.outfit_dict(tester.outfit_rows(1)[0].tolist(), blank=0)
    poisoned = torch.zeros(tester.hidden_size)
    poisoned[3] = bad
    with pytest.raises(ValueError, match="Outfit 1, slot 'bottoms': the embedding contains NaN or infinite"):
        model.complete([outfit, {**outfit, "bottoms": poisoned}])
    embeddings = tester.item_embeddings.clone()
    embeddings[5, 0] = bad
    for build in (
        lambda: UmBertModel(tester.config).set_catalogue(tester.item_ids, embeddings, tester.item_categories),
        lambda: WumBertModel.from_item_embeddings(
            tester.item_ids, embeddings, tester.item_categories, **tester.config_kwargs
        ),
    ):
        with pytest.raises(ValueError, match=f"item '{tester.item_ids[5]}' contains NaN or infinite"):
            build()


def test_catalogue_errors(tester):
    model = UmBertModel(tester.config)
    with pytest.raises(ValueError, match="no catalogue"):
        model.complete([{"shoes": "1", "tops": "2", "accessories": None, "bottoms": "3"}])
    ids, embeddings, categories = tester.item_ids, tester.item_embeddings, tester.item_categories
    with pytest.raises(ValueError, match="embedding_size=32"):
        model.set_catalogue(ids, torch.randn(len(ids), 16), categories)
    with pytest.raises(ValueError, match="no items of category 'bottoms'"):
        keep = [row for row, name in enumerate(categories) if name != "bottoms"]
        model.set_catalogue([ids[r] for r in keep], embeddings[keep], [categories[r] for r in keep])
    with pytest.raises(ValueError, match="Unknown catalogue categories \\['hats'\\]"):
        model.set_catalogue(ids, embeddings, ["hats"] + categories[1:])
    with pytest.raises(ValueError, match="more than once"):
        model.set_catalogue([ids[0]] + ids[:-1], embeddings, categories)
    with pytest.raises(ValueError, match="must be strings"):
        model.set_catalogue([int(ids[0])] + ids[1:], embeddings, categories)
    with pytest.raises(ValueError, match="inputs_embeds"):
        tester.umbert()(inputs_embeds=torch.randn(2, 4, 16))


# ----- persistence, Auto classes, remote code -----------------------------------------------------------------


@pytest.mark.parametrize("build", ["umbert", "wumbert"])
def test_save_load_round_trip_keeps_outputs_and_catalogue(tester, build, tmp_path):
    model = getattr(tester, build)()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    assert loaded.catalogue_item_id_list == tester.item_ids
    assert torch.equal(loaded.get_catalogue_embeddings(), model.get_catalogue_embeddings())
    inputs = tester.item_embeddings[tester.outfit_rows()]
    assert torch.equal(loaded(inputs_embeds=inputs).reconstructions, model(inputs_embeds=inputs).reconstructions)
    outfit = tester.outfit_dict(tester.outfit_rows(1)[0].tolist(), blank=1)
    assert loaded.complete([outfit]) == model.complete([outfit])
    config = AutoConfig.from_pretrained(tmp_path)
    assert config.catalogue_size == len(tester.item_ids)
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"]["AutoModel"].startswith("modeling_umbert.")


def test_auto_classes_are_registered():
    assert type(AutoConfig.for_model("umbert")) is UmBertConfig
    assert type(AutoConfig.for_model("wumbert")) is WumBertConfig
    assert type(AutoModel.from_config(UmBertConfig(hidden_size=32, num_attention_heads=4))) is UmBertModel
    assert type(AutoModel.from_config(WumBertConfig(hidden_size=32, num_attention_heads=4))) is WumBertModel


REMOTE_CODE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["umbert_hf"] = None  # the package must not be needed: the folder carries its code
    import torch
    from transformers import AutoModel
    folder, inputs_file = sys.argv[1], sys.argv[2]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    request = json.load(open(inputs_file))
    inputs = torch.tensor(request["inputs"])
    print(json.dumps({
        "reconstructions": model(inputs_embeds=inputs).reconstructions.tolist(),
        "completions": model.complete(request["outfits"], top_k=3),
    }))
    """
)


@pytest.mark.parametrize("build", ["umbert", "wumbert"])
@pytest.mark.slow
def test_remote_code_loading_without_the_package(tester, build, tmp_path):
    model = getattr(tester, build)()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    for name in ("modeling_umbert.py", "configuration_umbert.py", "retrieval.py", "masking.py"):
        assert (folder / name).exists()
    inputs = tester.item_embeddings[tester.outfit_rows(3)]
    outfits = [tester.outfit_dict(rows, blank=index) for index, rows in enumerate(tester.outfit_rows(3).tolist())]
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"inputs": inputs.tolist(), "outfits": outfits}))
    env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE_SCRIPT, str(folder), str(request)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert torch.allclose(
        torch.tensor(remote["reconstructions"]), model(inputs_embeds=inputs).reconstructions, atol=1e-6
    )
    assert remote["completions"] == model.complete(outfits, top_k=3)


# ----- wide item embeddings and catalogue-wide negatives ------------------------------------------------------


def test_wide_item_embeddings_train_through_an_input_projection_and_survive_save_and_load(tmp_path):
    tester = UmBertModelTester(embedding_size=48)
    model = tester.umbert()
    assert (model.config.hidden_size, model.config.embedding_size) == (32, 48)
    assert model.encoder.input_projection.weight.shape == (32, 48)
    rows, masked = expand_fill_in_the_blank(tester.outfit_rows(3))
    output = model(inputs_embeds=model.catalogue_embeddings[rows], masked_positions=masked, labels=rows)
    assert output.reconstructions.shape == (12, 4, 48) and output.last_hidden_state.shape == (12, 4, 32)
    assert output.masked_predictions.shape == (12, 48)
    output.loss.backward()
    assert model.encoder.input_projection.weight.grad.abs().sum() > 0
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    outfit = tester.outfit_dict(rows[0].tolist(), blank=1)
    assert reloaded.complete([outfit], top_k=4) == model.complete([outfit], top_k=4)
    with pytest.raises(ValueError, match=r"shape \(48,\)"):
        model.complete([{**outfit, "shoes": torch.zeros(32)}])
    assert UmBertModelTester().umbert().encoder.input_projection is None  # equal sizes: the original model


def test_labels_as_rows_give_the_loss_of_labels_as_embeddings(tester):
    model = tester.umbert()
    rows, masked = expand_fill_in_the_blank(tester.outfit_rows(4))
    embeds = model.catalogue_embeddings[rows]
    by_rows = model(inputs_embeds=embeds, masked_positions=masked, labels=rows).loss
    by_embeddings = model(inputs_embeds=embeds, masked_positions=masked, labels=embeds).loss
    assert torch.equal(by_rows, by_embeddings)


def test_catalogue_negatives_need_rows_and_are_a_valid_config_value():
    model = UmBertModelTester(contrastive_negatives="catalogue").umbert()
    embeds = model.catalogue_embeddings[:4].unsqueeze(0)
    with pytest.raises(ValueError, match="catalogue rows"):
        model(inputs_embeds=embeds, masked_positions=torch.tensor([0]), labels=embeds)
    with pytest.raises(ValueError, match="Unknown `contrastive_negatives` 'all'"):
        UmBertConfig(contrastive_negatives="all")


def test_catalogue_contrastive_loss_is_the_cross_entropy_over_the_category_without_copies_of_the_target():
    from umbert_hf.modeling_umbert import catalogue_contrastive_loss

    keys = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    key_categories = torch.tensor([0, 0, 0, 0, 1])
    predictions = torch.tensor([[0.9, 0.1]])
    target_rows, row_categories = torch.tensor([1]), torch.tensor([0])
    scale = torch.tensor(0.0)  # logit scale exp(0) = 1
    loss = catalogue_contrastive_loss(predictions, target_rows, row_categories, keys, key_categories, scale, "cosine")
    # Row 2 copies the target and row 4 is another category: the softmax is over rows 0, 1 and 3.
    similarities = torch.nn.functional.cosine_similarity(predictions, keys[[0, 1, 3]])
    expected = -torch.log_softmax(similarities, dim=0)[1]
    torch.testing.assert_close(loss, expected)
    # Euclidean: minus the squared distance over twice the keys' mean squared deviation.
    loss = catalogue_contrastive_loss(
        predictions, target_rows, row_categories, keys, key_categories, scale, "euclidean"
    )
    spread = 2 * (keys - keys.mean(dim=0)).pow(2).sum(dim=-1).mean()
    logits = -(predictions - keys[[0, 1, 3]]).pow(2).sum(dim=-1) / spread
    torch.testing.assert_close(loss, -torch.log_softmax(logits, dim=0)[1])


def test_catalogue_negatives_train_umbert_and_wumbert():
    for model in (
        UmBertModelTester(contrastive_negatives="catalogue").umbert().train(),
        UmBertModelTester(contrastive_negatives="catalogue", embedding_size=48).wumbert().train(),
    ):
        rows, masked = expand_fill_in_the_blank(UmBertModelTester().outfit_rows(3))
        inputs = (
            {"input_ids": rows}
            if isinstance(model, WumBertModel)
            else {"inputs_embeds": model.catalogue_embeddings[rows]}
        )
        loss = model(**inputs, masked_positions=masked, labels=rows).loss
        assert torch.isfinite(loss)
        loss.backward()
        assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad and "category" not in n)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_the_standardised_catalogue_is_reused_until_it_changes(distance):
    """umBERT's loss keys are computed once, not every step, and follow any change of the catalogue or the
    standardisation; WumBERT's keys train, so they are recomputed with their gradient."""
    from umbert_hf.modeling_umbert import _spread

    model = UmBertModelTester(contrastive_negatives="catalogue", distance=distance).umbert()

    def expected():
        keys = model.standardize(model.catalogue_embeddings)
        return keys, None if distance == "cosine" else _spread(keys)

    keys, spread = model.standardized_catalogue()
    assert model.standardized_catalogue()[0] is keys  # reused
    torch.testing.assert_close((keys, spread), expected())
    with torch.no_grad():
        model.catalogue_embeddings[2] += 3.0  # in place
    assert model.standardized_catalogue()[0] is not keys
    torch.testing.assert_close(model.standardized_catalogue(), expected())
    keys = model.standardized_catalogue()[0]
    model.embedding_scale = model.embedding_scale * 2  # another tensor
    torch.testing.assert_close(model.standardized_catalogue(), expected())
    assert model.standardized_catalogue()[0] is not keys
    # The loss of a step is the loss with the keys computed afresh.
    rows, masked = expand_fill_in_the_blank(UmBertModelTester().outfit_rows(3))
    cached = model(inputs_embeds=model.catalogue_embeddings[rows], masked_positions=masked, labels=rows).loss
    model._catalogue().pop("standardized")
    fresh = model(inputs_embeds=model.catalogue_embeddings[rows], masked_positions=masked, labels=rows).loss
    assert torch.equal(cached, fresh)

    wumbert = UmBertModelTester(contrastive_negatives="catalogue", distance=distance).wumbert()
    keys, _ = wumbert.standardized_catalogue()
    assert keys.requires_grad and wumbert.standardized_catalogue()[0] is not keys


def full_catalogue_logits(predictions, target_rows, row_categories, keys, key_categories, distance, scale):
    """The catalogue loss's logits written plainly over every key: other categories and copies of the target at -inf."""
    if distance == "cosine":
        logits = torch.nn.functional.normalize(predictions, dim=1) @ torch.nn.functional.normalize(keys, dim=1).T
    else:
        logits = -torch.cdist(predictions, keys).pow(2) / (2 * (keys - keys.mean(dim=0)).pow(2).sum(dim=-1).mean())
    rows = torch.arange(len(target_rows))
    copies = (keys[None, :, :] == keys[target_rows][:, None, :]).all(dim=-1)
    copies[rows, target_rows] = False
    masked = copies | (key_categories[None, :] != row_categories[:, None])
    return (scale * logits).masked_fill(masked, float("-inf"))


def catalogue_case(seed: int = 7):
    generator = torch.Generator().manual_seed(seed)
    key_categories = torch.tensor([0] * 40 + [1] * 25 + [2] * 15)
    keys = torch.randn(80, 6, generator=generator)
    keys[3] = keys[0]  # a copy: never a negative of its twin
    target_rows = torch.tensor([0, 5, 41, 60, 70, 3, 79])
    predictions = torch.randn(7, 6, generator=generator, requires_grad=True)
    return predictions, target_rows, key_categories[target_rows], keys, key_categories


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("max_negatives", [None, 40, 1000])
def test_the_catalogue_loss_scored_per_category_equals_the_full_catalogue_one(distance, max_negatives):
    """Below the cap (every category here has at most 40 items), each category is scored whole: the loss is exactly
    the cross-entropy over every key of the catalogue with other categories masked."""
    from umbert_hf.modeling_umbert import catalogue_contrastive_loss

    predictions, target_rows, row_categories, keys, key_categories = catalogue_case()
    loss = catalogue_contrastive_loss(
        predictions, target_rows, row_categories, keys, key_categories, torch.tensor(math.log(2.0)), distance,
        max_negatives=max_negatives,
    )  # fmt: skip
    logits = full_catalogue_logits(predictions, target_rows, row_categories, keys, key_categories, distance, 2.0)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, target_rows))


def test_a_category_above_the_cap_is_drawn_reproducibly_and_estimates_the_full_loss():
    from umbert_hf.modeling_umbert import catalogue_contrastive_loss

    predictions, target_rows, row_categories, keys, key_categories = catalogue_case(seed=8)
    scale = torch.tensor(0.0)

    def loss(max_negatives, seed):
        torch.manual_seed(seed)
        return catalogue_contrastive_loss(
            predictions, target_rows, row_categories, keys, key_categories, scale, "euclidean",
            max_negatives=max_negatives,
        )  # fmt: skip

    full = loss(None, 0)
    assert torch.equal(loss(10, 1), loss(10, 1)) and not torch.equal(loss(10, 1), loss(10, 2))
    drawn = torch.stack([loss(10, seed) for seed in range(200)])
    assert bool(torch.isfinite(drawn).all())  # the target is always among the candidates
    assert abs(drawn.mean().item() - full.item()) < 0.05 * full.item()  # the log(items / drawn) correction
    loss(10, 3).backward()
    assert predictions.grad is not None and bool(torch.isfinite(predictions.grad).all())


def test_max_catalogue_negatives_must_be_a_positive_integer_or_none():
    assert UmBertConfig(max_catalogue_negatives=None).max_catalogue_negatives is None
    for bad in (0, -3):
        with pytest.raises(ValueError, match="`max_catalogue_negatives` must be a positive integer or None"):
            UmBertConfig(max_catalogue_negatives=bad)
