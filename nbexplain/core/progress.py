"""A tqdm progress bar as a training callback."""

from __future__ import annotations


class ProgressBar:
    """Shows steps, target probability and area while a mask trains."""

    def __init__(self, **tqdm_kwargs):
        self.kwargs = tqdm_kwargs
        self.bar = None

    def on_start(self, info: dict) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=info["total_steps"], desc=f"explaining {info['target_name']}", leave=False, **self.kwargs)

    def on_step(self, state) -> None:
        if self.bar is not None:
            if state.total_steps > self.bar.total:  # a retried run continues past the first budget
                self.bar.total = state.total_steps
            self.bar.update(state.step - self.bar.n)
            self.bar.set_postfix(p=f"{state.prob:.3f}", area=f"{state.area:.1%}", refresh=False)

    def on_end(self, info: dict) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
