"""The words of Figure 5's claims (:class:`~jaxdyn.experiments.claims.ClaimText` templates, one per
claim in the order of ``claims.json``), filled by :mod:`jaxdyn.experiments.fig5.rules`."""

from __future__ import annotations

from jaxdyn.experiments.claims import ClaimText

__all__ = ["TEXTS", "FAMILY_RULE"]

_PAPER = "Δ^(adv) larger than Δ^(ori) (\"much higher\")"
_PROTOCOL = ("η = {eta}, D_j = {normalizer}, δ: ℓ∞ PGD ε = {eps}, α = {alpha}, {steps} steps; {n_samples} training "
             "digits per network, seeds {seeds} (each seed its own networks and digits), width {width}, {dtype}; "
             "matched-loss pool {match_pool} clean training digits; accuracy floor {floor}; test accuracy {accs}")
#: the rule of a family of per-layer tests (C.8 against its controls, the paper protocol, Theorem 6)
FAMILY_RULE = (
    "per network, comparison and layer: the median over digits and seeds of {quantity}, a hierarchical bootstrap "
    "(networks, then digits; {n_resamples} resamples, seeded) giving its 95 % interval and the one-sided p-values "
    "p(median ≤ 0), p(median ≥ 0); Holm's correction over all {k} one-sided p-values of the family at α = 0.05: a "
    "test holds when the excess (ratio above ×1) is significant, does not hold when the deficit is, is inconclusive "
    "otherwise, not testable with fewer than {min_digits} digits; the claim holds when every test holds, does not "
    "hold when every one does not, holds partly when some hold and the rest do not, is inconclusive otherwise. ×1 "
    "is the threshold (no excess at all); the tests whose interval lies above ×2 are counted beside. statistic: the "
    "weakest test (smallest median log-ratio) with its unadjusted 95 % interval, and every test in 'tests'. A "
    "network below the accuracy floor {floor} (test accuracy; a linear classifier reaches ~0.92 on MNIST: below "
    "it the network has collapsed) is left out (not testable), never counted against the claim")

#: one template per claim, in the order of ``claims.json``
TEXTS = {t.id: t for t in (
    ClaimText(
        "fig5.instability_vs_controls",
        "C.8 (Fig. 5): adversarial examples make the weight gradient more unstable than inputs of the same loss "
        "level and perturbations of the same size", paper=_PAPER, protocol=_PROTOCOL, measured="{measured}",
        baselines="Δ^(ori) on the same digits (the paper's comparison, claim fig5.instability); the ℓ2 gradient step "
                  "of δ's norm, loss-matched (jaxdyn.analyses.instability.random_loss_matched; a one-step ℓ2 attack, "
                  "reported, not a control of 'adversarial')",
        controls="(a) Δ^(ori) on clean digits whose loss is within ×1.25 of the adversarial example's; (b) Δ on "
                 "x + r, r an isotropic Gaussian direction of the ℓ2 norm of δ, x + r clipped into [0, 1] as x + δ is "
                 "(jaxdyn.analyses.instability.random_direction)",
        rule="standardly trained networks, both controls; " + FAMILY_RULE),
    ClaimText(
        "fig5.instability", "C.8 (Fig. 5), paper protocol: Δ^(adv) > Δ^(ori) on the same digits", paper=_PAPER,
        protocol=_PROTOCOL, measured="{measured}", baselines="Δ^(ori): the same one-layer step on the clean digit",
        controls="none in the paper's protocol (see fig5.instability_vs_controls: Δ rises with the loss level)",
        rule="standardly trained networks, Δ^(adv) against Δ^(ori) on the same digit; " + FAMILY_RULE
             + "; beside it (paper protocol, not the verdict) the layers whose mean Δ^(adv) exceeds the mean Δ^(ori)"),
    ClaimText(
        "fig5.sharpness", "(extension) λ_max of the loss Hessian is larger along adversarial training",
        paper="not measured in the paper (Theorem 6 and the edge-of-stability literature)",
        protocol="power iteration on a fixed probe batch {track}, {dtype_sharpness}; seeds {seeds}",
        measured="{measured}", baselines="λ_max along standard training",
        rule="per network (architecture × seed) log(λ_max at the end of adversarial training, adversarial loss / λ_max "
             "at the end of standard training, clean loss); the median over networks with a bootstrap interval "
             "(networks resampled, {n_resamples} resamples): holds when the interval lies above 0 (ratio ×1), does "
             "not hold when below, inconclusive when it straddles; a network with either training below the "
             "accuracy floor {floor} is left out (not testable)"),
    ClaimText(
        "fig5.theorem6",
        "Theorem 6 measured directly: the curvature an adversarial example adds to each layer (δ̂_i² H_h per row) "
        "is larger under adversarial training than vanilla, and than for a random perturbation of the same norm",
        paper="Theorem 6 / C.8 (the paper does not measure it)",
        protocol="T_j = tr Φ_Δa^* H_h Φ_Δa per layer (jaxdyn.analyses.curvature; Σ_i Δa_i² tr H_h for a dense "
                 "layer), H_h at the clean digit, δ as above; the first {n_samples} pool digits both networks of a "
                 "seed classify correctly; seeds {seeds}; {dtype}",
        measured="{measured}",
        baselines="T_j(δ) of the standardly trained network of the same seed on the same digits (its own PGD δ)",
        controls="an isotropic Gaussian direction scaled to δ's ℓ2 norm, x + r clipped into [0, 1] as x + δ is, on "
                 "the adversarially trained network",
        rule="per digit log T_j(δ) of the AT network minus the vanilla network's, and minus the random direction's "
             "on the AT network; " + FAMILY_RULE + "; both networks of a seed must reach the floor"),
)}
