// Entry point of the nbexplain audit gallery (an anywidget front-end module).
import { render } from "./view.js";

export default { render };
