"""The fill-in-the-blank expansion: every outfit repeated once per slot, with that slot masked."""

import torch


def expand_fill_in_the_blank(outfits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat each outfit once per slot and name the slot to mask in each copy.

    Args:
        outfits: (batch, slots, ...) tensor: item embeddings (batch, slots, hidden) or item ids (batch, slots).

    Returns:
        `(expanded, masked_positions)`: `expanded` is (batch * slots, slots, ...) where rows `i * slots + s` are
        copies of outfit `i`; `masked_positions` is (batch * slots,) with value `s` for that copy. The expanded
        outfits are also the reconstruction labels: the model must rebuild the whole outfit, masked slot included.
    """
    if outfits.dim() < 2:
        raise ValueError(f"`outfits` must be (batch, slots, ...), got shape {tuple(outfits.shape)}.")
    batch_size, num_slots = outfits.shape[:2]
    expanded = outfits.repeat_interleave(num_slots, dim=0)  # (batch * slots, slots, ...)
    masked_positions = torch.arange(num_slots, device=outfits.device).repeat(batch_size)  # (batch * slots,)
    return expanded, masked_positions


def mask_slots(
    inputs_embeds: torch.Tensor, masked_positions: torch.Tensor, mask_embeddings: torch.Tensor
) -> torch.Tensor:
    """Replace slot `masked_positions[i]` of outfit `i` with that slot's MASK token.

    Args:
        inputs_embeds: (batch, slots, hidden).
        masked_positions: (batch,) slot index per outfit.
        mask_embeddings: (slots, hidden), one MASK token per slot category.
    """
    batch_size, num_slots, _ = inputs_embeds.shape
    if masked_positions.shape != (batch_size,):
        raise ValueError(f"`masked_positions` must have shape ({batch_size},), got {tuple(masked_positions.shape)}.")
    if masked_positions.numel() and (masked_positions.min() < 0 or masked_positions.max() >= num_slots):
        raise ValueError(f"`masked_positions` must be slot indices in [0, {num_slots}), got {masked_positions}.")
    is_masked = torch.nn.functional.one_hot(masked_positions, num_slots).bool().unsqueeze(-1)  # (batch, slots, 1)
    return torch.where(is_masked, mask_embeddings.unsqueeze(0).to(inputs_embeds.dtype), inputs_embeds)


__all__ = ["expand_fill_in_the_blank", "mask_slots"]
