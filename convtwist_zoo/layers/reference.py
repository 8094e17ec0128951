"""The seed's reference ConvTwist (shared/seeds/convtwist-introduction.txt), kept verbatim as the oracle for parity
tests and the baseline of `bench/layer.py`. Not for training: it edits parameters inside ``forward``.
Only ``torch.Tensor(nf)`` became ``torch.empty(nf)`` and the class was renamed; nothing else changed."""
import numpy as np
import torch
import torch.nn as nn


class SeedConvTwist(nn.Module):  # replacing 3x3 Conv2d
    def __init__(self, ni, nf, stride=1, init_max=1.5):
        super(SeedConvTwist, self).__init__()
        self.conv = nn.Conv2d(ni, nf, kernel_size=3, stride=stride, padding=1, bias=False)
        self.conv_x = nn.Conv2d(ni, nf, kernel_size=3, stride=stride, padding=1, bias=False)
        self.conv_y = nn.Conv2d(ni, nf, kernel_size=3, stride=stride, padding=1, bias=False)
        self.symmetrize(self.conv_x.weight)
        self.conv_y.weight.data = self.conv_x.weight.transpose(2, 3).flip(3)
        self.center_x = nn.Parameter(torch.empty(nf), requires_grad=True)
        self.center_y = nn.Parameter(torch.empty(nf), requires_grad=True)
        self.center_x.data.uniform_(-init_max, init_max)
        self.center_y.data.uniform_(-init_max, init_max)

    def symmetrize(self, conv_wt):
        conv_wt.data = (conv_wt - conv_wt.flip(2).flip(3)) / 2

    def forward(self, inpt):
        out = self.conv(inpt)
        _, _, h, w = out.size()
        XX = torch.from_numpy(np.indices((1, h, w))[2] * 2 / w).type(out.dtype).to(out.device) - 1 + self.center_x.view(-1, 1, 1)
        YY = torch.from_numpy(np.indices((1, h, w))[1] * 2 / h).type(out.dtype).to(out.device) - 1 + self.center_y.view(-1, 1, 1)
        self.symmetrize(self.conv_x.weight)
        self.symmetrize(self.conv_y.weight)
        return out + XX * self.conv_x(inpt) + YY * self.conv_y(inpt)
