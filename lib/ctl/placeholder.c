/* placeholder until the layer lands */
int rod_ctl_placeholder_;
