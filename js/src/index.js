// Entry point of the nbexplain widget (an anywidget front-end module).
import { render } from "./view.js";

export default { render };
